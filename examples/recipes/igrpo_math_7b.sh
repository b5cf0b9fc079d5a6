#!/usr/bin/env bash
# The iGRPO paper's Table 1 setting in one command: train a 7B model with iGRPO on MATH, then evaluate it with the
# paper's protocol (pass@1 over k samples at temperature 0.6 / top-p 0.95, math-verify) on MATH-500, AIME24, AIME25.
#
#   VLLM_HOST=10.0.0.2 bash examples/recipes/igrpo_math_7b.sh     # train on this node, then evaluate
#   SKIP_TRAIN=1 bash examples/recipes/igrpo_math_7b.sh           # evaluate an existing $OUTPUT_DIR
#   BASE_ONLY=1 bash examples/recipes/igrpo_math_7b.sh            # evaluate the base model (Table 1's first row)
#   DRY_RUN=1 bash examples/recipes/igrpo_math_7b.sh              # print the commands instead of running them
#   RESUME=1 VLLM_HOST=10.0.0.2 bash examples/recipes/igrpo_math_7b.sh   # continue a stopped run (latest checkpoint)
#
# Training (examples/recipes/igrpo_math_7b.yaml): DeepSeek-R1-Distill-Qwen-7B, N = 4 drafts + G = 4 refinements,
# lr 1e-6 cosine_with_min_lr, temperature 0.7, 4,096-token completions, 1 epoch of MATH train, bf16, 8 training GPUs
# plus a vLLM server on a second node: start it there first with
#   trl-igrpo serve --model deepseek-ai/DeepSeek-R1-Distill-Qwen-7B --gpu_memory_utilization 0.85 --max_model_len 9216
# and pass that node's address as VLLM_HOST. Evaluation runs on this node with vLLM once training is done.
#
# Settings (environment variables): OUTPUT_DIR (outputs/igrpo-math-7b), NUM_PROCESSES (8), EVAL_TP (vLLM tensor
# parallel size for the evaluation, 4: it must divide the model's 28 attention heads), EVAL_MAX_NEW_TOKENS (32768;
# the paper's NeMo-Skills runs allowed 65,000), EVAL_BENCHMARKS ("math500 aime24 aime25"; also amc23 gsm8k minerva),
# PROMPT_TEMPLATE ("{problem}": the format the recipe trains on).
# Expected pass@1 (%), paper Table 1 (DeepSeek-R1-Distill-Qwen-7B): base 92.80 / 54.40 / 38.60 (MATH-500 / AIME24 /
# AIME25), + GRPO 93.25 / 55.00 / 38.90, + iGRPO 93.80 / 56.30 / 40.16. See docs/evaluation.md for how to read them.
set -euo pipefail

RECIPE=examples/recipes/igrpo_math_7b.yaml
BASE_MODEL=deepseek-ai/DeepSeek-R1-Distill-Qwen-7B
OUTPUT_DIR=${OUTPUT_DIR:-outputs/igrpo-math-7b}
NUM_PROCESSES=${NUM_PROCESSES:-8}
EVAL_TP=${EVAL_TP:-4}
EVAL_MAX_NEW_TOKENS=${EVAL_MAX_NEW_TOKENS:-32768}
EVAL_BENCHMARKS=${EVAL_BENCHMARKS:-math500 aime24 aime25}
PROMPT_TEMPLATE=${PROMPT_TEMPLATE:-"{problem}"}

run() {
    if [[ -n "${DRY_RUN:-}" ]]; then
        printf '%q ' "$@"
        echo
    else
        "$@"
    fi
}

if [[ -n "${BASE_ONLY:-}" ]]; then
    MODEL=$BASE_MODEL
    EVAL_DIR=outputs/eval/$(basename "$BASE_MODEL")
else
    MODEL=$OUTPUT_DIR
    EVAL_DIR=$OUTPUT_DIR/eval
    if [[ -z "${SKIP_TRAIN:-}" ]]; then
        : "${VLLM_HOST:?set VLLM_HOST to the address of the node running trl-igrpo serve (or SKIP_TRAIN=1)}"
        # checkpoints every 100 steps; RESUME=1 continues from the latest (without it, a run into an $OUTPUT_DIR that
        # holds checkpoints stops and says so instead of overwriting them)
        run trl-igrpo igrpo --config "$RECIPE" --output_dir "$OUTPUT_DIR" --vllm_server_host "$VLLM_HOST" \
            --accelerate_config multi_gpu --num_processes "$NUM_PROCESSES" ${RESUME:+--resume_from_checkpoint true}
    fi
fi

for benchmark in $EVAL_BENCHMARKS; do
    # k comes from the preset: 64 samples per problem on AIME, 8 elsewhere (the paper's protocol)
    run trl-igrpo eval --model_name_or_path "$MODEL" --preset "$benchmark" --backend vllm \
        --tensor_parallel_size "$EVAL_TP" --max_new_tokens "$EVAL_MAX_NEW_TOKENS" \
        --prompt_template "$PROMPT_TEMPLATE" --output_dir "$EVAL_DIR/$benchmark"
done

if [[ -z "${DRY_RUN:-}" ]]; then
    python - "$EVAL_DIR" $EVAL_BENCHMARKS <<'EOF'
import json, sys
from pathlib import Path

paper = {  # Table 1, DeepSeek-R1-Distill-Qwen-7B: base, + GRPO, + iGRPO (pass@1, %)
    "math500": (92.80, 93.25, 93.80), "aime24": (54.40, 55.00, 56.30), "aime25": (38.60, 38.90, 40.16),
    "amc23": (90.00, 90.00, 95.00), "gsm8k": (92.00, 92.12, 92.42), "minerva": (39.10, 40.44, 41.54),
}
print("| benchmark | this run | paper base | paper + GRPO | paper + iGRPO | truncated % |\n|---|---|---|---|---|---|")
for name in sys.argv[2:]:
    metrics = json.loads((Path(sys.argv[1]) / name / "results.json").read_text())["metrics"]
    base, grpo, igrpo = paper.get(name, ("-", "-", "-"))
    print(f"| {name} | {100 * metrics['pass@1']:.2f} | {base} | {grpo} | {igrpo} | {100 * metrics['truncated_frac']:.1f} |")
EOF
fi
