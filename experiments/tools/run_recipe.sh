#!/usr/bin/env bash
# One recipe trial on one speaker's footage, end to end with the project's own entry points:
# preprocess (cached) -> fine-tune -> evaluate on the held-out end -> lip-sync the held-out
# footage to other speech -> a montage of real vs generated mouths.
#   VIDEO=footage.mp4 HELDOUT=heldout.mp4 DRIVE=speech.flac OUT=/tmp/runs \
#   experiments/tools/run_recipe.sh NAME AUDIO_FRONT_END [train overrides...]
set -euo pipefail
name=$1; front=$2; shift 2
root=$(cd "$(dirname "$0")/../.." && pwd)
py="$root/.venv/bin/python"
out="$OUT/$name"; cache="$OUT/cache_$front"; speaker="s_${front}"
mkdir -p "$out"
common=(speaker=aoc "speaker.name=$speaker" "speaker.videos=[$VIDEO]" "paths.cache_dir=$cache" "paths.log_dir=$OUT/logs")
"$py" -m casync.preprocess "${common[@]}" "audio=$front" > "$out/preprocess.log" 2>&1
start=$(date +%s)
"$py" -m casync.train "${common[@]}" experiment=demo_cpu "audio=$front" "paths.output_dir=$out/train" "$@" > "$out/train.log" 2>&1
echo "train_seconds=$(( $(date +%s) - start ))" > "$out/timing.txt"
ckpt="$out/train/checkpoints/last.ckpt"
"$py" -m casync.evaluate "${common[@]}" "checkpoint=$ckpt" "paths.output_dir=$out" metrics.lpips=none progress=false > "$out/evaluate.log" 2>&1
"$py" -m casync.infer "checkpoint=$ckpt" "video=$HELDOUT" "driving_audio=$DRIVE" "output=$out/driven.mp4" "paths.cache_dir=$cache" progress=false > "$out/infer.log" 2>&1
"$py" "$root/experiments/tools/montage.py" "$out/montage.png" --video "real=$HELDOUT" --video "generated=$out/driven.mp4" --frames 14 >> "$out/infer.log" 2>&1
echo "done $name: $(cat "$out/timing.txt")"
