#!/usr/bin/env bash
# The active-learning benchmarks (`nadir bench active-learning`), on scene sets embedded with the
# default model (DATA: the folder `scripts/prepare_alignment_data.py` writes; features cached in
# ~/.cache/nadir/features):
# - balanced: every class of UC Merced (1,440 images) and of AID (RSICD's 10,000 images), mean
#   average precision on a held-out 30 % against labels, per strategy;
# - rare: 8 targets kept at 0.1, 0.5 and 1 % of a 38k-image archive (UCM + AID + EuroSAT), from
#   2 positives, 10 labels per round: positives found, recall in the top N, AP, per strategy;
#   also the time to score 1M x 256-d patches with a probe.
# Writes docs/bench/active-learning*.{csv,md,png} (the plots need matplotlib: PYTHON=a python
# that has it).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:?set DATA to the folder scripts/prepare_alignment_data.py wrote}
seeds=${SEEDS:-3}
cargo build --release --locked --bin nadir
nadir=./target/release/nadir
out=docs/bench
# The rare targets: UCM and AID classes (as `set/class`) that show the same thing.
targets=(
  --target "storage tanks=rsicd/storage tanks,ucm/storagetanks"
  --target "stadium=rsicd/stadium"
  --target "church=rsicd/church"
  --target "port=rsicd/port,ucm/harbor"
  --target "baseball field=rsicd/baseball field,ucm/baseballdiamond"
  --target "railway station=rsicd/railway station"
  --target "airport=rsicd/airport,ucm/airplane"
  --target "bridge=rsicd/bridge"
)
for set in ucm rsicd; do
  $nadir bench active-learning --archive "$data" --datasets $set --seeds "$seeds" > $out/active-learning-$set.csv
done
${PYTHON:-python3} scripts/plot_active_learning.py $out/active-learning-ucm.csv $out/active-learning.png
$nadir bench active-learning --archive "$data" --datasets ucm,rsicd,eurosat --seeds "$seeds" --rounds 15 \
  --score-rows 1000000 --summary $out/active-learning-rare.md \
  "${targets[@]}" \
  --prevalence 0.001,0.005,0.01 > $out/active-learning-rare.csv
${PYTHON:-python3} scripts/plot_active_learning_rare.py $out/active-learning-rare.csv $out/active-learning-rare.png
# Cold start from one example (10 rounds, the main strategies): the summary only.
$nadir bench active-learning --archive "$data" --datasets ucm,rsicd,eurosat --seeds "$seeds" --rounds 10 \
  --start-positives 1 --strategies likely,likely+uncertain,uncertainty,nearest,random \
  --summary $out/active-learning-rare-start1.md \
  "${targets[@]}" \
  --prevalence 0.001,0.005,0.01 > /dev/null
