"""The ``trl-igrpo`` command line, in the style of TRL's ``trl`` CLI (``trl grpo ...``).

    trl-igrpo --help                                   # the subcommands
    trl-igrpo igrpo --config examples/recipes/igrpo_math_7b.yaml --accelerate_config zero3 --num_processes 8
    trl-igrpo rpo --online
    trl-igrpo serve --model ./ckpt --port 8000
    trl-igrpo eval --model_name_or_path ./ckpt --preset math500
    trl-igrpo export-lora --adapter_path ./ckpt --output_dir ./ckpt-lora

Training subcommands parse their flags with the script's :class:`~trl.TrlParser` first (``--help``, ``--config`` and bad
flags are handled before anything starts); flags the script does not know are ``accelerate launch`` flags, and a flag
neither knows is a one-line error. The run goes through ``accelerate launch`` (as ``trl grpo`` does) whenever that can
change anything (an accelerate flag or config file, several GPUs); otherwise it runs in this process. Details:
docs/cli.md.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.metadata
import importlib.resources
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["COMMANDS", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, and how to run it with the arguments after the name."""

    name: str
    help: str
    run: Callable[[list[str]], int]


def _subtract_subsequence(tokens: list[str], subsequence: list[str]) -> list[str]:
    """`tokens` without the ordered `subsequence` (the flags the script did not recognise)."""
    remaining = iter(subsequence)
    current = next(remaining, None)
    kept = []
    for token in tokens:
        if current is not None and token == current:
            current = next(remaining, None)
        else:
            kept.append(token)
    return kept


def _needs_accelerate_launch(launch_args: list[str]) -> bool:
    if launch_args:
        return True
    if "WORLD_SIZE" in os.environ:  # already inside torchrun / accelerate launch
        return False
    from accelerate.commands.config import default_config_file

    if os.path.isfile(default_config_file):
        return True
    import torch

    return torch.cuda.device_count() > 1


def _accelerate_launch(script_module: str, launch_args: list[str], script_args: list[str]) -> None:
    from accelerate.commands.launch import launch_command, launch_command_parser

    package, _, file_stem = script_module.rpartition(".")
    script_path = importlib.resources.files(package).joinpath(f"{file_stem}.py")
    launch_command(launch_command_parser().parse_args([*launch_args, str(script_path), *script_args]))


class _UsageError(Exception):
    """A command-line mistake to report in one or two lines (``prog: error: ...``, exit status 2)."""


def _raise_usage_error(message: str):
    raise _UsageError(message)


def _is_flag(token: str) -> bool:
    if not token.startswith("-") or token == "-":
        return False
    try:
        float(token)  # a negative number is a value
    except ValueError:
        return True
    return False


def _resolve_launch_args(launch_args: list[str]) -> tuple[list[str], list[str]]:
    """(`launch_args` with ``--accelerate_config`` resolved, the flags among them that ``accelerate launch`` does not
    know). Raises :class:`_UsageError` for accelerate's own complaints (a bad value, an unknown config name)."""
    if not launch_args:
        return launch_args, []
    from accelerate.commands.launch import launch_command_parser
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    try:
        launch_args = resolve_accelerate_config_argument(launch_args)
    except ValueError as error:
        raise _UsageError(str(error)) from None
    parser = launch_command_parser()
    parser.error = _raise_usage_error  # one line instead of accelerate's 115-line usage (argparse's error hook)
    namespace, unknown = parser.parse_known_args([*launch_args, "training_script.py"])
    unknown_flags = [token.split("=", 1)[0] for token in unknown if _is_flag(token)]
    if namespace.training_script != "training_script.py" and not unknown_flags:
        # a value no flag took (`--report_to tensorboard wandb`); after an unknown flag it is that flag's value
        raise _UsageError(
            f"unrecognized argument: {namespace.training_script!r} (a value after a flag that takes one value; "
            "--report_to takes one integration or 'all', several go in the --config YAML as a list)"
        )
    return launch_args, unknown_flags


def _did_you_mean(parser: argparse.ArgumentParser, flags: list[str]) -> str:
    known = [option for action in parser._actions for option in action.option_strings if option.startswith("--")]
    matches = {flag: difflib.get_close_matches(flag, known, n=1, cutoff=0.75) for flag in flags}
    pairs = [(flag, found[0]) for flag, found in matches.items() if found]
    if not pairs:
        return ""
    if len(flags) == 1:
        return f" (did you mean {pairs[0][1]}?)"
    return " (did you mean " + ", ".join(f"{match} for {flag}" for flag, match in pairs) + "?)"


def _check_model_paths(parsed: Sequence) -> None:
    from trl_igrpo.utils.model_path import check_model_path

    for arguments in parsed:
        for field_name, what in (("model_name_or_path", "model path"), ("reward_model_path", "reward model path")):
            value = getattr(arguments, field_name, None)
            try:
                check_model_path(value, what=what)
            except FileNotFoundError as error:
                raise _UsageError(str(error)) from None


def _validate(
    name: str, module, parser, parsed: Sequence, config_remaining: list[str], cli_remaining: list[str]
) -> list[str]:
    """The ``accelerate launch`` arguments of a run; :class:`_UsageError` for flags nobody knows, a missing model, or
    what the script's ``preflight`` finds (unknown reward names, a missing vLLM/logger package, a bad
    ``--resume_from_checkpoint``, an ``--output_dir`` whose checkpoints the run would overwrite)."""
    prog = f"trl-igrpo {name}"
    launch_args, unknown = _resolve_launch_args(config_remaining + cli_remaining)
    from_config = [flag for flag in unknown if flag in config_remaining]
    from_cli = [flag for flag in unknown if flag not in from_config]
    if from_cli:
        raise _UsageError(
            f"unrecognized arguments: {' '.join(from_cli)}{_did_you_mean(parser, from_cli)}\n"
            f"Neither the {name} script nor `accelerate launch` knows them; see `{prog} --help` (script flags) and "
            "`accelerate launch --help` (launcher flags)."
        )
    if from_config:
        keys = ", ".join(flag[2:] for flag in from_config)
        raise _UsageError(
            f"unknown keys in the --config file: {keys}{_did_you_mean(parser, from_config)}\n"
            f"They are neither {name} script flags nor `accelerate launch` flags; see `{prog} --help`."
        )
    _check_model_paths(parsed)
    try:
        module.preflight(*parsed)  # checks only: nothing loads, nothing is deleted
    except ValueError as error:
        raise _UsageError(str(error)) from None
    return launch_args


def _asks_for_vllm(argv: list[str]) -> bool:
    """``--use_vllm`` on the command line (alone, or with a true value); a ``--config`` asking for it is caught after
    parsing, by the script's preflight."""
    for index, token in enumerate(argv):
        if token == "--use_vllm":
            following = argv[index + 1] if index + 1 < len(argv) else ""
            return following.lower() not in ("false", "0", "no")
        if token.startswith("--use_vllm="):
            return token.split("=", 1)[1].lower() not in ("false", "0", "no")
    return False


def _training_command(name: str, help_text: str) -> Command:
    module_name = f"trl_igrpo.scripts.{name}"

    def run(argv: list[str]) -> int:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from trl_igrpo.scripts.help_cache import cached_help, help_requested, store_help

        if _asks_for_vllm(argv):  # before the parser, which imports transformers (10-20 s on a small CPU)
            from trl_igrpo.utils.extras import require_vllm_package

            try:
                require_vllm_package("--use_vllm")
            except ImportError as error:
                print(f"trl-igrpo {name}: error: {error}", file=sys.stderr)
                return 2
        help_text = cached_help(name, argv) if help_requested(argv) else None
        if help_text is not None:  # the parser imports transformers' TrainingArguments: 10-20 s on a small CPU
            sys.stdout.write(help_text)
            return 0
        module = importlib.import_module(module_name)
        prog = f"trl-igrpo {name}"
        # rpo: the config class (offline/online) and the CPU demo defaults depend on argv, as in the script itself.
        parser = module.parser_for(argv, prog=prog) if name == "rpo" else module.make_parser(prog=prog)
        if help_requested(argv):
            help_text = parser.format_help()
            store_help(name, argv, help_text)
            sys.stdout.write(help_text)
            return 0
        # Exits on --help / bad values; unknown flags come back as accelerate-launch flags (TRL's own split).
        *parsed, config_remaining, cli_remaining = parser.parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True
        )
        try:
            launch_args = _validate(name, module, parser, parsed, config_remaining, cli_remaining)
        except _UsageError as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return 2
        script_args = _subtract_subsequence(argv, cli_remaining)
        if _needs_accelerate_launch(launch_args):
            _accelerate_launch(module_name, launch_args, script_args)
        elif name == "rpo":
            module.main(script_args)
        else:
            module.cli(script_args)
        return 0

    return Command(name, help_text, run)


def _run_serve(argv: list[str]) -> int:
    from trl_igrpo.vllm.serve import main as serve_main

    serve_main(argv)
    return 0


def _run_eval(argv: list[str]) -> int:
    from trl_igrpo.eval.cli import main as eval_main

    return eval_main(argv)


def _run_export_lora(argv: list[str]) -> int:
    from trl_igrpo.tied_lora.cli import main as export_lora_main

    return export_lora_main(argv)


def _run_pass_rate(argv: list[str]) -> int:
    from trl_igrpo.curriculum.pass_rate import main as pass_rate_main

    pass_rate_main(argv, prog="trl-igrpo pass-rate")
    return 0


COMMANDS: tuple[Command, ...] = (
    _training_command("igrpo", "Train with iGRPO: best-of-N drafts, then GRPO on refinements (arXiv 2602.09000)"),
    _training_command("grpo", "Train with GRPO + Llama-Nemotron pass-rate curriculum / dynamic sampling"),
    _training_command(
        "rpo", "Train with reward-aware preference optimization, offline or --online (arXiv 2502.00203)"
    ),
    Command("serve", "Start the vLLM server a trainer with vllm_mode='server' talks to", _run_serve),
    Command(
        "pass-rate", "Estimate each prompt's pass rate from k samples and filter (Llama-Nemotron)", _run_pass_rate
    ),
    Command("eval", "Evaluate a checkpoint on a math benchmark: pass@1 over k samples, pass@k, maj@k", _run_eval),
    Command("export-lora", "Export a Tied-LoRA adapter as a standard LoRA adapter (PEFT, vLLM)", _run_export_lora),
)


def _package_version() -> str:
    # Installed metadata, so `--help`/`--version` do not import torch/TRL.
    try:
        return importlib.metadata.version("trl-igrpo")
    except importlib.metadata.PackageNotFoundError:
        from trl_igrpo import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The top-level ``trl-igrpo`` parser: ``--version`` and one subcommand per :data:`COMMANDS` entry (each command
    parses its own flags)."""
    parser = argparse.ArgumentParser(
        prog="trl-igrpo",
        description="NVIDIA reasoning post-training recipes (iGRPO, RPO, Tied-LoRA, curriculum) on TRL. "
        "Run `trl-igrpo <command> --help` for a command's flags.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"trl-igrpo {_package_version()}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="<command>")
    for command in COMMANDS:
        subparsers.add_parser(command.name, help=command.help, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trl-igrpo`` console script and ``python -m trl_igrpo``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, _ = parser.parse_known_args(argv)  # unknown subcommand -> "invalid choice ... (choose from ...)", exit 2
    if args.command is None:
        parser.print_help()
        return 0
    command = next(command for command in COMMANDS if command.name == args.command)
    return command.run(argv[argv.index(args.command) + 1 :])


if __name__ == "__main__":
    sys.exit(main())
