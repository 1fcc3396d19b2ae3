"""Fails when a crate of the workspace declares a dependency its code never names (what
cargo-machete does, without installing it): every [dependencies] entry must appear as a path
(`name::`, `use name`, `extern crate name`, `name!`) in the crate's src/ or build.rs, every
[dev-dependencies] entry in its src/, tests/ or benches/. A dependency needed only for its
features or links can be listed in the crate's `[package.metadata.unused-ok] names = [...]`.
Usage: python3 scripts/check_unused_deps.py (from anywhere)."""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sources(crate: Path, folders: list[str]) -> str:
    text = []
    for f in folders:
        p = crate / f
        if p.is_file():
            text.append(p.read_text())
        elif p.is_dir():
            text.extend(x.read_text() for x in p.rglob("*.rs"))
    return "\n".join(text)


def named(code: str, dep: str) -> bool:
    ident = re.escape(dep.replace("-", "_"))
    return re.search(rf"(?<![\w:]){ident}(::|!|\s*;|\s*\{{|\s+as\b)", code) is not None or re.search(
        rf"\buse\s+{ident}\b|\bextern\s+crate\s+{ident}\b", code) is not None


def main() -> int:
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = ["."] + workspace["workspace"]["members"]
    bad = []
    for m in members:
        crate = ROOT / m
        manifest = tomllib.loads((crate / "Cargo.toml").read_text())
        ok = set(manifest.get("package", {}).get("metadata", {}).get("unused-ok", {}).get("names", []))
        code = sources(crate, ["src", "build.rs"])
        dev_code = code + sources(crate, ["tests", "benches", "examples"])
        for table, text in [("dependencies", code), ("dev-dependencies", dev_code)]:
            for dep, spec in manifest.get(table, {}).items():
                name = spec.get("package", dep) if isinstance(spec, dict) else dep
                if dep in ok or named(text, dep) or named(text, name):
                    continue
                bad.append(f"{crate.relative_to(ROOT) if m != '.' else 'nadir (root)'}: [{table}] {dep} is never used")
    for b in bad:
        print(b)
    if bad:
        print(f"{len(bad)} unused dependencies: remove them (or list them under [package.metadata.unused-ok])")
        return 1
    print(f"no unused dependency in {len(members)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
