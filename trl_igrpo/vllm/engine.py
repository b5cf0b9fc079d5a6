"""The vLLM engine every GRPO-based trainer of the package generates with: TRL's ``VLLMGeneration`` with weight sync
that works with or without CUDA, context checks, and one ``n=k`` request per prompt group.

:class:`~trl_igrpo.core.GRPOBaseTrainer` builds :class:`WeightSyncVLLMGeneration` instead of TRL's class (see
:func:`use_vllm_engine`); it changes three things and keeps everything else, including *when* TRL syncs (once per
optimizer step):

- ``sync_weights``: the backend of :mod:`~trl_igrpo.vllm.weight_sync` (TRL's NCCL path on CUDA);
- ``_init_vllm``: fails fast with a clear message when the server is down, skips the CUDA-only NCCL communicator for the
  reload backends, passes ``vllm_engine_kwargs`` to ``LLM(...)``, and checks that prompt + draft + completion fit
  ``max_model_len`` before any request;
- ``generate``: the same context check per request, and in colocate mode one request with ``n=k`` per run of ``k``
  identical prompts (TRL sends ``k`` requests with ``n=1``), on GPU as on CPU.

Three things here are replaced for the length of one call, each because TRL 1.16 offers no argument or hook for it
(the alternative would be a copy of TRL's method): the ``VLLMGeneration`` name ``GRPOTrainer.__init__`` builds
(:func:`use_vllm_engine`), the ``LLM`` class ``_init_vllm`` builds (:func:`_extra_llm_kwargs`), and the engine's
``generate`` that TRL's ``generate`` calls (:meth:`WeightSyncVLLMGeneration.generate`). Each is restored on exit.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import is_peft_model
from trl.generation.vllm_client import VLLMClient
from trl.generation.vllm_generation import VLLMGeneration

from ..utils.context import check_context_budget
from .weight_sync import reload_colocated, reload_server, resolve_weight_sync_backend

__all__ = ["SERVE_HINT", "WeightSyncVLLMGeneration", "use_vllm_engine"]

SERVE_HINT = "trl-igrpo serve --model <model_dir> --port <port>"
_FIX = (
    "Raise `vllm_max_model_length` (colocate) or the server's `--max-model-len` (server mode), or shorten the "
    "prompts, `max_draft_length` or `max_completion_length`."
)


class WeightSyncVLLMGeneration(VLLMGeneration):
    """``VLLMGeneration`` with the backends of :mod:`~trl_igrpo.vllm.weight_sync` (see the module docstring).

    Extra constructor arguments: ``weight_sync`` (a backend name), ``weight_sync_dir`` (``filesystem`` only: a
    directory the server can read; a temporary one, removed at exit, when None), ``context_budget`` ((longest
    prompt, extra prompt tokens such as iGRPO's draft) checked before the first request) and ``engine_kwargs``.
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
        self.context_budget = context_budget
        self.engine_kwargs = dict(engine_kwargs or {})
        self.weight_sync_backend = None  # resolved in _init_vllm, once the accelerator is known
        self.num_weight_syncs = 0
        self.max_model_len = None
        super().__init__(*args, **kwargs)

    def _check_budget(self, max_model_len: int | None) -> None:
        if self.context_budget is None:
            return
        prompt_length, draft_length = self.context_budget
        check_context_budget(
            max_model_len,
            prompt_length,
            self.max_completion_length,
            draft_length=draft_length,
            where=f"vLLM ({self.mode}, max_model_len={max_model_len})",
            fix=_FIX,
        )

    def _init_vllm(self):
        self.weight_sync_backend = resolve_weight_sync_backend(
            self.requested_weight_sync, self.mode, self.accelerator.device.type
        )
        if self.mode == "colocate":
            # Fail before building the engine (tens of seconds) when the configured length cannot fit.
            config = getattr(self.model, "config", None)
            self._check_budget(self.max_model_length or getattr(config, "max_position_embeddings", None))
            with _extra_llm_kwargs(self.engine_kwargs):
                super()._init_vllm()
            self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
            self._check_budget(self.max_model_len)
            return
        base_url = self.server_base_url or f"http://{self.server_host}:{self.server_port}"
        self.server_base_url = base_url
        if self.weight_sync_backend == "nccl":
            with _clear_connection_error(base_url, self.server_timeout):
                super()._init_vllm()
        else:  # TRL's server init would also call init_communicator, which needs CUDA: connect only.
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
            self.max_model_len = int(self.vllm_client.get_server_info()["model_config"]["max_model_len"])
        self.max_model_len = _broadcast_int(self.max_model_len)
        self._check_budget(self.max_model_len)

    def sync_weights(self):
        """Push the current policy weights into vLLM (TRL's NCCL path on CUDA, reload paths otherwise)."""
        self.num_weight_syncs += 1
        if self.weight_sync_backend == "nccl":
            return super().sync_weights()
        if self.weight_sync_backend == "reload":
            if self.enable_sleep_mode:
                self.llm.wake_up(tags=["weights"])
                self._llm_weights_sleeping = False
            reload_colocated(self.llm, self._iter_named_params(), copy=is_peft_model(self.model))
            return None
        reload_server(
            getattr(self, "vllm_client", None),  # only the main process holds a client
            self.weight_sync_dir,
            self.model.config,
            self._iter_named_params(),
            self.accelerator,
        )
        return None

    def generate(self, prompts, images, num_generations, profiler=None):
        """TRL's generate, plus a context-length check and, in colocate mode, one ``n=k`` request per prompt."""
        if self.max_model_len is not None and prompts:
            check_context_budget(
                self.max_model_len,
                max(len(p) for p in prompts),
                self.max_completion_length,
                where=f"vLLM ({self.mode}, max_model_len={self.max_model_len})",
                completion_name="max_tokens of this request: max_draft_length or max_completion_length",
                fix=_FIX,
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


@contextlib.contextmanager
def use_vllm_engine(trainer_cls: type, factory):
    """While a trainer's ``__init__`` runs, make ``VLLMGeneration`` in the modules of its bases resolve to ``factory``.

    The only way in: ``GRPOTrainer.__init__`` builds its engine wrapper with a module-level name and offers no factory
    hook, and building TRL's wrapper and replacing it afterwards would start the vLLM engine twice. The names are
    restored on exit.
    """
    modules: list[tuple[Any, Any]] = []
    for klass in trainer_cls.__mro__:
        module = sys.modules.get(klass.__module__)
        if module is not None and "VLLMGeneration" in vars(module) and module not in (m for m, _ in modules):
            modules.append((module, vars(module)["VLLMGeneration"]))
    for module, _ in modules:
        setattr(module, "VLLMGeneration", factory)  # noqa: B010 - a module global, not a typed attribute
    try:
        yield
    finally:
        for module, original in modules:
            setattr(module, "VLLMGeneration", original)  # noqa: B010


@contextlib.contextmanager
def _extra_llm_kwargs(extra: dict):
    """While TRL builds the colocated ``LLM(...)``, add/override its keyword arguments with ``extra``.

    TRL passes a fixed set (no ``dtype``, ``quantization`` only for bitsandbytes) from inside ``_init_vllm``, with no
    argument to add one; recipes need e.g. ``quantization="fp8"`` rollouts, and exact-match tests ``dtype="float32"``.
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
