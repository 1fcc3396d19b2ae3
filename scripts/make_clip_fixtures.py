#!/usr/bin/env python3
"""Build the PyTorch / open_clip reference fixtures used by the Rust `clip` crate tests.

Run from the repository root:

    python scripts/make_clip_fixtures.py --shared ../shared/data --out clip/tests/fixtures

Requirements (PyPI; CPU is enough, the torch wheel from PyPI is the CUDA build, ~5.6 GB):

    pip install torch open_clip_torch ftfy regex safetensors pillow transformers

(torchvision and timm come in as dependencies of open_clip_torch.)

The script is deterministic: fixed seeds (`torch.manual_seed(0)`, per-model
`torch.Generator` seeds, `random.Random(0)` for the tokenizer cases), fixed image
crops, `torch.use_deterministic_algorithms(True)`, one thread, MKL_CBWR=AUTO,STRICT.
Re-running it with the same
package versions gives byte-identical tensors. It writes, into --out:

A. tiny random open_clip models `tiny-quickgelu` and `tiny-gelu`:
   NAME.json (open_clip config), NAME.pt (zip torch.save, fp16 state_dict),
   NAME.safetensors (fp16, open_clip keys), NAME-hf.safetensors (fp16, HF
   transformers CLIPModel keys) + NAME-hf.config.json (HF CLIPConfig),
   NAME-reference.safetensors (pixel_values, image_embeds, text_tokens,
   text_embeds, logits_per_image, logit_scale), and texts.json.
B. tokenizer_cases.json: [{"text", "ids"[77]}] from open_clip.tokenize;
   also copies open_clip's bpe_simple_vocab_16e6.txt.gz to clip/assets/.
C. images/ (5 PNG crops of real imagery + 2 UCM JPEGs as-is) and
   preprocess_reference.safetensors ([3,224,224] float32 per file name,
   open_clip ViT-B-32 eval preprocess).
D. openclip-keys-ViT-B-32.json / openclip-keys-ViT-L-14.json ({key: shape}).
Plus VERSIONS.txt (torch, open_clip, torchvision, Pillow, transformers, ...).
"""

import argparse
import csv
import gzip
import html
import json
import math
import os
import platform
import random
import shutil
import sys
from collections import OrderedDict
from pathlib import Path

# Bitwise-reproducible MKL GEMMs regardless of memory alignment (else ~1 ulp run-to-run jitter).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import numpy as np
import torch
from PIL import Image

import open_clip
import safetensors
from safetensors.torch import save_file, load_file

CONTEXT = 77
SOT, EOT = 49406, 49407


# --------------------------------------------------------------------------
# A. tiny models
# --------------------------------------------------------------------------

def tiny_config(quick_gelu):
    return OrderedDict(
        embed_dim=32,
        quick_gelu=quick_gelu,
        vision_cfg=OrderedDict(image_size=64, layers=2, width=64, head_width=32, patch_size=16),
        text_cfg=OrderedDict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2),
    )


def build_tiny(cfg, seed):
    """open_clip CLIP with its own init, then N(0, 0.02) noise added to every
    parameter (so LayerNorm weights stay ~1 and every bias is non-zero), logit_scale
    = log(1/0.07) + noise, then everything rounded through float16."""
    model = open_clip.model.CLIP(
        embed_dim=cfg["embed_dim"],
        vision_cfg=dict(cfg["vision_cfg"]),
        text_cfg=dict(cfg["text_cfg"]),
        quick_gelu=cfg["quick_gelu"],
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32) * 0.02
            if name == "logit_scale":
                p.copy_(torch.full_like(p, math.log(1 / 0.07)) + noise)
            else:
                p.add_(noise)
        for p in model.parameters():
            p.copy_(p.half().float())
    model.eval()
    return model


def fp16_state_dict(model):
    return OrderedDict((k, v.detach().half().contiguous().clone()) for k, v in model.state_dict().items())


def openclip_to_hf(sd):
    """open_clip CLIP (ViT) state_dict -> HF transformers CLIPModel state_dict."""
    out = OrderedDict()
    used = set()

    def put(dst, src, t=None):
        out[dst] = (sd[src] if t is None else t).contiguous()
        used.add(src)

    put("logit_scale", "logit_scale")
    put("text_model.embeddings.token_embedding.weight", "token_embedding.weight")
    put("text_model.embeddings.position_embedding.weight", "positional_embedding")
    put("text_model.final_layer_norm.weight", "ln_final.weight")
    put("text_model.final_layer_norm.bias", "ln_final.bias")
    put("text_projection.weight", "text_projection", sd["text_projection"].t())
    put("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight")
    put("vision_model.embeddings.class_embedding", "visual.class_embedding")
    put("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding")
    put("vision_model.pre_layrnorm.weight", "visual.ln_pre.weight")
    put("vision_model.pre_layrnorm.bias", "visual.ln_pre.bias")
    put("vision_model.post_layernorm.weight", "visual.ln_post.weight")
    put("vision_model.post_layernorm.bias", "visual.ln_post.bias")
    put("visual_projection.weight", "visual.proj", sd["visual.proj"].t())

    for src_prefix, dst_prefix in (("transformer.resblocks.", "text_model.encoder.layers."),
                                   ("visual.transformer.resblocks.", "vision_model.encoder.layers.")):
        layers = sorted({int(k[len(src_prefix):].split(".")[0]) for k in sd if k.startswith(src_prefix)})
        for i in layers:
            s, d = f"{src_prefix}{i}.", f"{dst_prefix}{i}."
            for kind in ("weight", "bias"):
                q, k, v = sd[s + f"attn.in_proj_{kind}"].chunk(3, dim=0)
                put(d + f"self_attn.q_proj.{kind}", s + f"attn.in_proj_{kind}", q)
                put(d + f"self_attn.k_proj.{kind}", s + f"attn.in_proj_{kind}", k)
                put(d + f"self_attn.v_proj.{kind}", s + f"attn.in_proj_{kind}", v)
                put(d + f"self_attn.out_proj.{kind}", s + f"attn.out_proj.{kind}")
                put(d + f"layer_norm1.{kind}", s + f"ln_1.{kind}")
                put(d + f"layer_norm2.{kind}", s + f"ln_2.{kind}")
                put(d + f"mlp.fc1.{kind}", s + f"mlp.c_fc.{kind}")
                put(d + f"mlp.fc2.{kind}", s + f"mlp.c_proj.{kind}")
    missing = set(sd) - used
    assert not missing, f"unmapped open_clip keys: {sorted(missing)}"
    return out


def hf_config_dict(cfg):
    import transformers
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    act = "quick_gelu" if cfg["quick_gelu"] else "gelu"
    conf = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=t["vocab_size"], hidden_size=t["width"], intermediate_size=4 * t["width"],
            num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
            max_position_embeddings=t["context_length"], hidden_act=act, layer_norm_eps=1e-5,
            projection_dim=cfg["embed_dim"], pad_token_id=1, bos_token_id=SOT, eos_token_id=EOT,
        ),
        vision_config=dict(
            hidden_size=v["width"], intermediate_size=4 * v["width"], num_hidden_layers=v["layers"],
            num_attention_heads=v["width"] // v["head_width"], image_size=v["image_size"],
            patch_size=v["patch_size"], num_channels=3, hidden_act=act, layer_norm_eps=1e-5,
            projection_dim=cfg["embed_dim"],
        ),
        projection_dim=cfg["embed_dim"],
        logit_scale_init_value=math.log(1 / 0.07),
    )
    conf.architectures = ["CLIPModel"]
    d = conf.to_dict()
    d["torch_dtype"] = "float16"
    return conf, d


def _features(x):
    # transformers < 5 returns a tensor; newer versions may return a model output.
    if isinstance(x, torch.Tensor):
        return x
    for attr in ("image_embeds", "text_embeds", "pooler_output"):
        if getattr(x, attr, None) is not None:
            return getattr(x, attr)
    raise TypeError(type(x))


def verify_hf(conf, hf_sd16, pixel_values, tokens, image_embeds, text_embeds, logits, name):
    import transformers
    hf = transformers.CLIPModel(conf).eval()
    hf_sd = {k: v.float() for k, v in hf_sd16.items()}
    res = hf.load_state_dict(hf_sd, strict=False)
    bad_missing = [k for k in res.missing_keys if not k.endswith("position_ids")]
    assert not bad_missing and not res.unexpected_keys, (bad_missing, res.unexpected_keys)
    with torch.inference_mode():
        img = _features(hf.get_image_features(pixel_values=pixel_values))
        txt = _features(hf.get_text_features(input_ids=tokens))
        img = img / img.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        out = hf(input_ids=tokens, pixel_values=pixel_values)
    di = (img - image_embeds).abs().max().item()
    dt = (txt - text_embeds).abs().max().item()
    dl = (out.logits_per_image - logits).abs().max().item()
    print(f"  [{name}] HF vs open_clip: image {di:.2e}, text {dt:.2e}, logits {dl:.2e}")
    assert di < 1e-5, f"{name}: HF image embeds differ by {di}"
    assert dt < 1e-5, f"{name}: HF text embeds differ by {dt}"
    assert dl < 1e-3, f"{name}: HF logits differ by {dl}"
    return di, dt


def make_texts():
    return [
        "dense residential near the coast",
        "",
        "An aerial view of a harbor with 12 boats, 3 piers & a breakwater (2019).",
        "a green golf course surrounded by trees",
        "Many buildings and some green trees are in a dense residential area.",
        "airplane parked at the gate of an airport terminal",
        "a river crossing farmland, with a bridge!",
        # longer than 77 tokens
        "a very long caption describing " + " and ".join(
            f"{n} {w}" for n, w in zip(
                ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"],
                ["storage tanks", "tennis courts", "baseball diamonds", "parking lots", "runways",
                 "overpasses", "mobile homes", "sparse houses", "rivers", "beaches", "harbors",
                 "intersections", "farms", "forests", "lakes", "roads"])) + " seen from above at noon",
    ]


# --------------------------------------------------------------------------
# B. tokenizer cases
# --------------------------------------------------------------------------

def tokenizer_strings(shared):
    rng = random.Random(0)
    caps = []
    with open(shared / "ucm" / "captions.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for i in range(1, 6):
                caps.append(row[f"caption_{i}"])
    uniq = sorted(set(caps))
    real = rng.sample(uniq, min(200, len(uniq)))

    fixed = [
        # empty / whitespace
        "", " ", "   ", "\t", "\n", "\r\n", " \t \n ", "\u00a0", "\u3000", "\u2003\u2003",
        # punctuation
        "!!!", "...", "?!?!", "a,b;c:d", "hello, world!", "it's a dog's life", "don't stop",
        "we'll, they've, I'm, you're, she'd", "\"quoted\"", "'single'", "(parens) [brackets] {braces}",
        "a-b_c.d/e\\f|g", "@#$%^&*()_+=-`~", "semi;colon;separated;list", "end.", "...start",
        "--double--dash--", "a—em dash–en dash", "¿Qué? ¡Sí!", "«guillemets» ‹single›",
        "bullet • list · middle dot", "§ 12 ¶ 3", "©2024 ® ™", "100% sure", "a/b/c",
        "x*y+z=w", "1+1=2", "<tag>", "a<b>c", "key=value&other=2",
        # digits / units / coordinates
        "0", "42", "3.14159", "1,000,000", "1 000 000", "-273.15°C", "12.5 km", "300 m²",
        "0.3 m/px", "10 m GSD", "45°N 122°W", "45° 30' 15\" N", "-33.8688, 151.2093",
        "EPSG:4326", "EPSG:32617", "UTM 17N 403000E 3285000N", "2019-06-21T10:30:00Z",
        "12:45 pm", "v1.2.3", "3x3", "1920x1080", "10km", "5kg", "NDVI 0.72", "B04/B08",
        "Sentinel-2 L2A", "Landsat 8 OLI/TIRS", "123abc456", "0x1F", "1e-5", "½ ¼ ¾",
        "①②③", "Ⅻ", "²³¹", "₀₁₂",
        # accented Latin
        "café crème brûlée", "naïve façade", "Élysée à Paris", "Übergröße Straße", "Größe",
        "Fußgängerzone in München", "Ñandú año señor", "el niño está aquí", "Zürich",
        "Hà Nội, Việt Nam", "Thành phố Hồ Chí Minh", "Đường phố đông đúc", "tiếng Việt có dấu",
        "Łódź, Kraków, Gdańsk", "zażółć gęślą jaźń", "Ørsted ålesund æble", "Ångström",
        "São Paulo", "coração", "İstanbul ığdır", "čeština žluťoučký kůň", "Ελλάδα", "Crème Fraîche",
        # non-Latin scripts
        "北京市的高楼大厦", "中华人民共和国", "遥感图像", "東京タワー", "ひらがなとカタカナ",
        "空港の滑走路", "서울특별시", "한국어 텍스트", "مرحبا بالعالم", "دبي الإمارات",
        "שלום עולם", "ירושלים", "Москва, Россия", "Привет мир", "жилой район у моря",
        "Αθήνα", "καλημέρα κόσμε", "नमस्ते दुनिया", "हिन्दी", "สวัสดีครับ", "กรุงเทพมหานคร",
        "ქართული", "Հայաստան", "አማርኛ", "தமிழ்", "বাংলা", "ಕನ್ನಡ",
        "mixed 中文 and English", "Dubai دبي skyline", "Tokyo 東京 2020",
        # emoji
        "😀", "🌍🌎🌏", "beach 🏖️ and sea 🌊", "🛰️ satellite", "👍🏽", "👩‍👩‍👧‍👦",
        "👨‍💻 at work", "🏳️‍🌈", "❤️", "🇫🇷", "🇺🇸🇬🇧🇯🇵", "🇻🇳 flag", "🚀🚀🚀", "🙂 smile 🙂",
        "#️⃣", "1️⃣2️⃣3️⃣", "☀️⛅🌧️",
        # HTML entities
        "&amp;", "&lt;b&gt;bold&lt;/b&gt;", "it&#39;s", "&quot;quoted&quot;", "rock &amp; roll",
        "&amp;amp;", "&#x41;&#66;", "&nbsp;space", "&copy; 2020", "&eacute;t&eacute;",
        "a &lt; b &gt; c", "fish &amp; chips &amp;&amp; more", "<b>&amp;</b>",
        # curly quotes
        "“double curly”", "‘single curly’", "it’s", "don’t", "„German“", "‚low‘",
        # ligatures
        "ﬁeld", "ﬂower", "oﬃce", "ﬀ ﬄ ﬅ ﬆ", "ĳ", "Ǆ",
        # full-width
        "ＦＵＬＬ　ＷＩＤＴＨ", "ｆｕｌｌｗｉｄｔｈ １２３", "（括弧）", "！？", "ｶﾀｶﾅ",
        # whitespace variants
        "tab\tseparated\tvalues", "new\nline", "multiple   spaces   here", "  leading",
        "trailing  ", "\n\nblank lines\n\n", "mixed \t\n whitespace", "a\u00a0b",
        # case
        "UPPER CASE", "lower case", "MiXeD CaSe", "CamelCaseWord", "iPhone", "McDonald's",
        "NASA JPL", "LiDAR", "RGB-NIR",
        # URLs / hashtags / handles / emails
        "https://example.com/path?q=1&r=2", "http://www.openaerialmap.org", "www.test.org",
        "#remotesensing", "#EarthObservation #GIS", "@user_name", "email@example.com",
        "ftp://files.example.org/a.tif", "file:///home/user/image.png",
        # special tokens as text
        "<start_of_text>", "<end_of_text>", "<|endoftext|>", "</w>",
    ]

    long_base = [
        "This high resolution aerial photograph shows a dense residential neighbourhood with many "
        "red-roofed houses, narrow streets, small gardens, parked cars, a school with a running "
        "track, a church, two swimming pools and a wide river crossed by an old stone bridge "
        "near the busy commercial district, while in the background industrial warehouses, "
        "storage tanks and a railway yard stretch towards the harbour where container ships wait.",
        ("lots of parking lots " * 40).strip(),
        " ".join(str(i) for i in range(200)),
        "a" * 500,
        "🛰️" * 100,
        "北京" * 150,
        ",".join(["-33.8688", "151.2093"] * 60),
        ("Hà Nội " * 60).strip(),
        "word " * 76,
        "word " * 75,
        "word " * 74,
        " ".join(["antidisestablishmentarianism"] * 30),
    ]

    # generated variants of real captions
    gen = []
    pool = uniq
    emojis = ["🌊", "🏠", "🌳", "✈️", "🚗", "🇧🇷", "👩‍🚀", "⛵"]
    entities = ["&amp;", "&lt;", "&gt;", "&#39;", "&quot;", "&nbsp;"]
    units = ["m", "km", "m²", "ha", "°", "%", "px", "cm"]
    accented = ["é", "ü", "ñ", "ø", "ł", "ệ", "ç", "å"]
    for i in range(320):
        c = rng.choice(pool)
        kind = i % 16
        if kind == 0:
            s = c.upper()
        elif kind == 1:
            s = "".join(ch.upper() if rng.random() < 0.5 else ch for ch in c)
        elif kind == 2:
            s = c.replace(" ", rng.choice(["  ", "\t", "\n", " \t ", "   "]))
        elif kind == 3:
            s = f"{c} {rng.choice(emojis)}"
        elif kind == 4:
            s = c.replace(" and ", f" {rng.choice(entities)} ") + rng.choice(entities)
        elif kind == 5:
            s = f"{c}, {rng.randint(0, 9999)} {rng.choice(units)}"
        elif kind == 6:
            s = f"“{c}”"
        elif kind == 7:
            s = c + "".join(rng.choice("!?.,;:-") for _ in range(rng.randint(1, 6)))
        elif kind == 8:
            w = c.split()
            j = rng.randrange(len(w))
            w[j] = w[j] + rng.choice(accented)
            s = " ".join(w)
        elif kind == 9:
            s = f"  {c}  "
        elif kind == 10:
            s = " ".join(rng.sample(pool, rng.randint(5, 12)))
        elif kind == 11:
            s = f"{rng.uniform(-90, 90):.4f}, {rng.uniform(-180, 180):.4f} {c}"
        elif kind == 12:
            s = c.title()
        elif kind == 13:
            s = f"#{c.replace(' ', '')}"
        elif kind == 14:
            s = f"{c} 遥感 {rng.choice(['東京', 'Москва', 'دبي', 'Ελλάδα', 'हिन्दी', 'ไทย'])}"
        else:
            s = c.replace("fi", "ﬁ").replace("fl", "ﬂ").replace("'", "’")
        gen.append(s)

    out, seen = [], set()
    for s in real + fixed + long_base + gen:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


# --------------------------------------------------------------------------
# C. images
# --------------------------------------------------------------------------

def crop_rgb(path, box):
    im = Image.open(path)
    im.load()
    im = im.convert("RGB")
    return im.crop(box)


def make_images(shared, img_dir):
    img_dir.mkdir(parents=True, exist_ok=True)
    ucm = shared / "ucm" / "images"
    oam = shared / "scenes" / "openaerialmap"
    dubai = shared / "segmentation" / "dubai" / "tile1" / "images"

    im = Image.open(ucm / "beach00.jpg").convert("RGB")
    im.save(img_dir / "ucm_beach.png")
    # (left, upper, right, lower)
    crop_rgb(oam / "5b90f92da0d7280005fab355_4310.tif", (900, 1000, 1200, 1180)).save(img_dir / "manila_wide.png")
    crop_rgb(dubai / "image_part_001.jpg", (200, 150, 370, 410)).save(img_dir / "dubai_tall.png")
    crop_rgb(oam / "5b90f92da0d7280005fab355_4310.tif", (1400, 600, 1624, 824)).save(img_dir / "manila_224.png")
    crop_rgb(oam / "OSBS_029.tif", (150, 160, 270, 260)).save(img_dir / "neon_small.png")
    shutil.copyfile(ucm / "harbor00.jpg", img_dir / "ucm_harbor00.jpg")
    shutil.copyfile(ucm / "runway00.jpg", img_dir / "ucm_runway00.jpg")

    pngs = ["ucm_beach.png", "manila_wide.png", "dubai_tall.png", "manila_224.png", "neon_small.png"]
    files = pngs + ["ucm_harbor00.jpg", "ucm_runway00.jpg"]
    for f in files:
        with Image.open(img_dir / f) as im:
            print(f"  images/{f}: {im.size[0]}x{im.size[1]} {im.mode}")
    return pngs, files


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default="../shared/data", type=Path)
    ap.add_argument("--out", default="clip/tests/fixtures", type=Path)
    ap.add_argument("--assets", default=None, type=Path,
                    help="where to copy the BPE vocab (default: OUT/../../assets)")
    args = ap.parse_args()
    shared, out = args.shared, args.out
    assets = args.assets or (out / ".." / ".." / "assets")
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    import torchvision
    import PIL
    import transformers
    import ftfy

    # ---------------- versions
    versions = OrderedDict(
        python=platform.python_version(),
        torch=torch.__version__,
        open_clip_torch=open_clip.__version__,
        torchvision=torchvision.__version__,
        Pillow=PIL.__version__,
        transformers=transformers.__version__,
        ftfy=ftfy.__version__,
        safetensors=safetensors.__version__,
        numpy=np.__version__,
    )
    with open(out / "VERSIONS.txt", "w") as f:
        f.write("# Packages used by scripts/make_clip_fixtures.py to build these fixtures\n")
        for k, v in versions.items():
            f.write(f"{k}=={v}\n")
    print("versions:", dict(versions))

    # ---------------- C. images + preprocess reference
    print("C. images")
    img_dir = out / "images"
    pngs, files = make_images(shared, img_dir)
    pre224 = open_clip.image_transform(224, is_train=False)
    _, _, pre_b32 = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    pre_ref = OrderedDict()
    for f in files:
        im = Image.open(img_dir / f).convert("RGB")
        x = pre224(im)
        y = pre_b32(Image.open(img_dir / f).convert("RGB"))
        assert torch.equal(x, y), f"image_transform(224) != ViT-B-32 preprocess for {f}"
        assert x.shape == (3, 224, 224) and x.dtype == torch.float32
        pre_ref[f] = x.contiguous()
    save_file(pre_ref, str(out / "preprocess_reference.safetensors"),
              metadata={"transform": repr(pre224).replace("\n", " "),
                        "input": "PIL.Image.open(path).convert('RGB')"})
    print("  preprocess:", repr(pre224).replace("\n", " "))

    # ---------------- B. tokenizer
    print("B. tokenizer")
    strings = tokenizer_strings(shared)
    ids = open_clip.tokenize(strings, context_length=CONTEXT)
    tok2 = open_clip.get_tokenizer("ViT-B-32")
    assert torch.equal(ids, tok2(strings)), "open_clip.tokenize != get_tokenizer('ViT-B-32')"
    assert ids.shape == (len(strings), CONTEXT)
    cases = [{"text": s, "ids": [int(v) for v in row]} for s, row in zip(strings, ids.tolist())]
    n_trunc = sum(1 for c in cases if c["ids"][-1] == EOT)
    assert len(cases) >= 600, len(cases)
    with open(out / "tokenizer_cases.json", "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=None)
        f.write("\n")
    print(f"  {len(cases)} cases, {n_trunc} truncated at 77")
    bpe_src = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    assets.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bpe_src, assets / "bpe_simple_vocab_16e6.txt.gz")

    # ---------------- A. tiny models
    print("A. tiny models")
    texts = make_texts()
    with open(out / "texts.json", "w", encoding="utf-8") as f:
        json.dump(texts, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(out / "images.json", "w", encoding="utf-8") as f:
        json.dump(pngs, f, indent=1)
        f.write("\n")
    text_tokens = open_clip.tokenize(texts, context_length=CONTEXT).long()
    pre64 = open_clip.image_transform(64, is_train=False)
    pixel_values = torch.stack([pre64(Image.open(img_dir / f).convert("RGB")) for f in pngs]).contiguous()

    embeds = {}
    for name, quick, seed in (("tiny-quickgelu", True, 1), ("tiny-gelu", False, 2)):
        cfg = tiny_config(quick)
        with open(out / f"{name}.json", "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
        model = build_tiny(cfg, seed)
        sd16 = fp16_state_dict(model)
        # The fp16 files hold exactly the weights used below.
        for k, v in model.state_dict().items():
            assert torch.equal(v, sd16[k].float()), k
        torch.save(sd16, out / f"{name}.pt")
        save_file(sd16, str(out / f"{name}.safetensors"), metadata={"format": "pt", "layout": "open_clip"})

        with torch.inference_mode():
            image_embeds = model.encode_image(pixel_values, normalize=True)
            text_embeds = model.encode_text(text_tokens, normalize=True)
            logit_scale = model.logit_scale.detach().reshape(1).clone()
            logits = logit_scale.exp() * image_embeds @ text_embeds.T
            li, lt = model(pixel_values, text_tokens)[:2]
            assert torch.allclose(li, image_embeds, atol=1e-6) and torch.allclose(lt, text_embeds, atol=1e-6)
        ref = OrderedDict(
            pixel_values=pixel_values,
            image_embeds=image_embeds.contiguous(),
            text_tokens=text_tokens.contiguous(),
            text_embeds=text_embeds.contiguous(),
            logits_per_image=logits.contiguous(),
            logit_scale=logit_scale.contiguous(),
        )
        save_file(ref, str(out / f"{name}-reference.safetensors"),
                  metadata={"images": json.dumps(pngs), "texts": "texts.json",
                            "preprocess": repr(pre64).replace("\n", " ")})

        # round-trip checks of the written files
        sd_pt = torch.load(out / f"{name}.pt", map_location="cpu", weights_only=True)
        sd_st = load_file(str(out / f"{name}.safetensors"))
        assert list(sd_pt) == list(sd16) and all(torch.equal(sd_pt[k], sd16[k]) for k in sd16)
        assert all(torch.equal(sd_st[k], sd16[k]) for k in sd16) and set(sd_st) == set(sd16)

        # HF layout
        hf_sd16 = openclip_to_hf(sd16)
        save_file(hf_sd16, str(out / f"{name}-hf.safetensors"), metadata={"format": "pt"})
        conf, conf_d = hf_config_dict(cfg)
        with open(out / f"{name}-hf.config.json", "w") as f:
            json.dump(conf_d, f, indent=2, sort_keys=True)
            f.write("\n")
        # verify from the files as written (config JSON + fp16 weights, run in float32)
        conf_file = transformers.CLIPConfig.from_json_file(str(out / f"{name}-hf.config.json"))
        assert conf_file.text_config.eos_token_id == EOT and conf_file.text_config.hidden_act == conf.text_config.hidden_act
        verify_hf(conf_file, load_file(str(out / f"{name}-hf.safetensors")), pixel_values, text_tokens,
                  image_embeds, text_embeds, logits, name)
        embeds[name] = (model, image_embeds, text_embeds)
        print(f"  {name}: logit_scale={logit_scale.item():.6f} image_embeds[0,:4]={image_embeds[0, :4].tolist()}")

    # How much does the activation matter for these weights? (fixtures must discriminate)
    m_q = embeds["tiny-quickgelu"][0]
    swapped = open_clip.model.CLIP(embed_dim=32, vision_cfg=dict(tiny_config(False)["vision_cfg"]),
                                   text_cfg=dict(tiny_config(False)["text_cfg"]), quick_gelu=False).eval()
    swapped.load_state_dict(m_q.state_dict())
    with torch.inference_mode():
        di = (swapped.encode_image(pixel_values, normalize=True) - embeds["tiny-quickgelu"][1]).abs().max().item()
        dt = (swapped.encode_text(text_tokens, normalize=True) - embeds["tiny-quickgelu"][2]).abs().max().item()
    print(f"  tiny-quickgelu weights run with GELU instead: image diff {di:.3e}, text diff {dt:.3e}")
    assert di > 1e-4 and dt > 1e-4, "fixtures do not discriminate GELU from QuickGELU"

    # ---------------- D. key manifests
    print("D. key manifests")
    for arch in ("ViT-B-32", "ViT-L-14"):
        m = open_clip.create_model(arch, pretrained=None)
        man = OrderedDict((k, list(v.shape)) for k, v in m.state_dict().items())
        with open(out / f"openclip-keys-{arch}.json", "w") as f:
            json.dump(man, f, indent=1)
            f.write("\n")
        n = sum(v.numel() for v in m.state_dict().values())
        print(f"  {arch}: {len(man)} tensors, {n} elements")
        del m

    total = 0
    for p in sorted(list(out.rglob("*")) + [assets / "bpe_simple_vocab_16e6.txt.gz"]):
        if p.is_file():
            os.chmod(p, 0o644)
            total += p.stat().st_size
    print(f"total size (fixtures + BPE vocab): {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
