"""``trl-igrpo export-lora``: write a Tied-LoRA adapter as the equal standard LoRA adapter (see :func:`export_lora`)."""

from __future__ import annotations

import argparse
import json
import os

from peft.utils import SAFETENSORS_WEIGHTS_NAME

from .export import DTYPES, TiedLoraExportError, export_lora

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "trl-igrpo export-lora") -> argparse.ArgumentParser:
    """The ``export-lora`` argument parser: one flag per argument of :func:`export_lora`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Export a Tied-LoRA adapter as a standard PEFT LoRA adapter (exact) that PEFT, vLLM and other "
        "LoRA consumers load without trl-igrpo.",
        allow_abbrev=False,
    )
    parser.add_argument("--adapter_path", required=True, help="Directory of the saved Tied-LoRA adapter.")
    parser.add_argument("--output_dir", required=True, help="Where to write the LoRA adapter (new or empty).")
    parser.add_argument(
        "--base_model", default=None, help="Base model path or Hub id; default: the one in adapter_config.json."
    )
    parser.add_argument(
        "--allow_different_base_model",
        action="store_true",
        help="Accept a --base_model whose name differs from the recorded one (the same model elsewhere).",
    )
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="Exported dtype; default: as saved.")
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace the adapter files in a non-empty output_dir."
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """``trl-igrpo export-lora``: exit status 0 on success, 2 with a one-paragraph reason otherwise."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        output_dir = export_lora(
            args.adapter_path, args.output_dir, base_model=args.base_model, dtype=args.dtype,
            overwrite=args.overwrite, allow_different_base_model=args.allow_different_base_model,
        )  # fmt: skip
    except TiedLoraExportError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    with open(os.path.join(output_dir, "adapter_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    size = os.path.getsize(os.path.join(output_dir, SAFETENSORS_WEIGHTS_NAME))
    print(
        f"LoRA adapter written to {output_dir} (peft_type {config['peft_type']}, r={config['r']}, "
        f"lora_alpha={config['lora_alpha']}, {size:,} bytes); load it with PeftModel.from_pretrained or vLLM's "
        "LoRARequest, no trl-igrpo needed."
    )
    return 0
