"""Configuration of the Tied-LoRA tuner (Renduchintala, Konuk, Kuchaiev, arXiv 2311.09578, NAACL 2024)."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Union

from peft.config import PeftConfig


class TiedLoraPeftType(str, enum.Enum):  # noqa: UP042 - the same base as PEFT's own PeftType
    """The PEFT type of Tied-LoRA, shaped like a member of PEFT's ``PeftType`` (a ``str``-valued enum).

    PEFT 0.21's ``PeftType`` is a closed enum: an out-of-tree tuner can neither add a member nor subclass it. PEFT uses
    ``config.peft_type`` in two ways: as a key of its mapping dicts (looked up with the plain string read from
    ``adapter_config.json``) and through ``.value`` in messages (``get_peft_model(..., mixed=True)``,
    ``hotswap_adapter``, ``Trainer``'s best-model reload). A ``str`` enum member serves both: it equals and hashes like
    ``"TIEDLORA"``, JSON writes it as ``"TIEDLORA"``, and it has ``.value``. ``str()`` and f-strings give
    ``"TIEDLORA"`` too, on every Python version.
    """

    TIEDLORA = "TIEDLORA"

    def __str__(self) -> str:
        return self.value

    def __format__(self, format_spec: str) -> str:
        return format(self.value, format_spec)


#: The PEFT type of Tied-LoRA: ``TiedLoraPeftType.TIEDLORA``, equal to the string ``"TIEDLORA"`` that
#: ``adapter_config.json`` stores. The tuner is registered under it in PEFT's mapping dicts (see
#: ``trl_igrpo/tied_lora/__init__.py``).
TIED_LORA_PEFT_TYPE = TiedLoraPeftType.TIEDLORA

#: Written into every saved ``adapter_config.json`` (field ``load_requires``) and the adapter's README: PEFT knows
#: ``"TIEDLORA"`` only after ``trl_igrpo`` registered it, and without that PEFT fails with a bare ``KeyError: 'TIEDLORA'``
#: before any code of this package can run, so the saved files are the only place to say what to do.
LOAD_REQUIRES = (
    "import trl_igrpo  # before PeftModel.from_pretrained / PeftConfig.from_pretrained (pip install trl-igrpo): "
    "PEFT has no built-in TIEDLORA type, and this import registers the Tied-LoRA tuner with PEFT; without it PEFT "
    "raises KeyError: 'TIEDLORA'"
)

#: Target modules used when ``target_modules`` is ``None``: the paper adapts the attention input projections only.
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj")

#: The paper's fused QKV projection expressed over separate q/k/v modules (the default ``fused_module_groups``).
FUSED_QKV = ("q_proj", "k_proj", "v_proj")

#: Attribute (not a field) a ``TiedLoraConfig`` gets when a ``TiedLoraModel`` injects it: (weak reference to that model,
#: adapter name). ``export_lora=True`` saves read the module layout from it.
EXPORT_SOURCE_ATTRIBUTE = "_tied_lora_export_source"

#: Heading of the section ``TiedLoraConfig.save_pretrained`` appends to an adapter's README.md (once).
LOADING_NOTE_HEADING = "## Loading this Tied-LoRA adapter"
LOADING_NOTE = f"""
{LOADING_NOTE_HEADING}

This is a [Tied-LoRA](https://arxiv.org/abs/2311.09578) adapter (`"peft_type": "TIEDLORA"` in `adapter_config.json`),
saved by [trl-igrpo](https://github.com/trl-igrpo/trl-igrpo). PEFT has no built-in Tied-LoRA type: install
`trl-igrpo` and `import trl_igrpo` before loading it, otherwise PEFT stops with `KeyError: 'TIEDLORA'`.

```python
import trl_igrpo  # registers the Tied-LoRA tuner with PEFT
from peft import PeftModel

model = PeftModel.from_pretrained(base_model, "path/or/repo-of-this-adapter")
```
"""


def add_loading_note_to_model_card(directory: str) -> bool:
    """Append :data:`LOADING_NOTE` to ``directory/README.md`` if that file exists and lacks it; True if appended."""
    path = os.path.join(directory, "README.md")
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if LOADING_NOTE_HEADING in text:
        return False
    with open(path, "a", encoding="utf-8") as f:
        f.write(("" if text.endswith("\n") else "\n") + LOADING_NOTE)
    return True


#: Named configurations of the paper, as (train_A, train_B, train_u, train_v). Only the names we could establish are
#: listed: TL6 (everything trainable; reproduces the paper's "12.5 % of LoRA's parameters" at r=8 on LLaMA-2-7B) and
#: TL5 (tied A and B trained, u = v = 1 frozen; consistent with the paper's "~131K" tied parameters). The mapping of
#: TL1-TL4 and TL7 to (A, B, u, v) was not retrievable; every combination is still reachable through the four flags.
TIED_LORA_CONFIGURATIONS: dict[str, tuple[bool, bool, bool, bool]] = {
    "TL5": (True, True, False, False),
    "TL6": (True, True, True, True),
}
UNKNOWN_TIED_LORA_CONFIGURATIONS = ("TL1", "TL2", "TL3", "TL4", "TL7")


@dataclass
class TiedLoraConfig(PeftConfig):
    r"""
    Configuration class of a Tied-LoRA adapter ([Tied-LoRA](https://huggingface.co/papers/2311.09578), Renduchintala,
    Konuk and Kuchaiev, NAACL 2024): `delta W_l = scaling * diag(v_l) B diag(u_l) A` (paper, Sec. 2).

    A (``r x in``) and B (``out x r``) are *tied*: one tensor shared by every layer of a tie group; ``u_l`` (``r``) and
    ``v_l`` (``out``) are per-layer scaling vectors. Each of A, B, u, v is trained or frozen (``train_A`` ... ``train_v``);
    a frozen ``u`` or ``v`` is the identity (fixed at 1, not stored). Paper defaults are the defaults here: TL6 (all
    four trained), rank 8, ``alpha = r`` (scaling 1, "we simply set alpha = r"), q/k/v targets grouped as one fused QKV
    projection.

    Tie groups: target modules of one (out, in) shape share one (A, B) pair across layers. Modules listed together in a
    ``fused_module_groups`` entry read the same input, as the paper's fused QKV projection does: inside one layer they
    share the per-layer ``u``, across layers they share one tied A (``r x d``), and each member keeps its own tied B and
    its own per-layer ``v``. With ``[["q_proj", "k_proj", "v_proj"]]`` (the default) the trainable parameter count of TL6
    is ``4dr + L(r + 3d)`` on a multi-head-attention model, the paper's figure.

    Initialisation makes the adapter an exact no-op: the first trainable factor among (B, v, u, A) starts at zero and
    every other factor is non-zero (A and a frozen B random Kaiming-uniform, u = v = 1). With B trainable this is LoRA's
    convention (B = 0); with B frozen (VeRA-like settings) v (or u, or A) starts at zero instead.

    Parameters:
        > Parameters that control the adapter's shape and what it adapts

        r (`int`, *optional*, defaults to `8`):
            Rank of the tied A and B. At most `min(in_features, out_features)` of every target module (a layer's
            update cannot have a higher rank); a larger `r` is refused when the adapter is applied, naming the module.
        target_modules (`list[str]`, `str` or `None`, *optional*, defaults to `None`):
            Module names (suffix match) or a regex to adapt. `None` means `("q_proj", "k_proj", "v_proj")`, the
            paper's scope.
        exclude_modules (`list[str]`, `str` or `None`, *optional*, defaults to `None`):
            Module names (or a regex) never adapted.
        fused_module_groups (`list[list[str]]` or `None`, *optional*, defaults to `[["q_proj", "k_proj", "v_proj"]]`):
            Groups of sibling module names that read the same input and are treated as one fused projection (shared
            tied A and per-layer u; own tied B and own per-layer v). `None` or `[]` ties purely by shape. The default
            is the paper's fused QKV.
        layers_to_transform (`list[int]`, `int` or `None`, *optional*, defaults to `None`):
            Restrict adaptation to these layer indices, as in `LoraConfig`.
        layers_pattern (`list[str]`, `str` or `None`, *optional*, defaults to `None`):
            Name of the layer list used with `layers_to_transform`, as in `LoraConfig`.
        modules_to_save (`list[str]` or `None`, *optional*, defaults to `None`):
            Extra modules trained in full and saved with the adapter (e.g. a classification head).

        > Parameters that control which factors train (the paper's configurations)

        train_A (`bool`, *optional*, defaults to `True`):
            Train the tied down-projection A. The four `train_*` flags all on is TL6; see `from_configuration` for the
            paper's other configurations.
        train_B (`bool`, *optional*, defaults to `True`):
            Train the tied up-projection B.
        train_u (`bool`, *optional*, defaults to `True`):
            Train the per-layer scaling vector u (applied to the rank-r activations).
        train_v (`bool`, *optional*, defaults to `True`):
            Train the per-layer scaling vector v (applied to the output).

        > Parameters that control the adapter's computation

        alpha (`float` or `None`, *optional*, defaults to `None`):
            LoRA-style scaling numerator, `scaling = alpha / r`. `None` means `alpha = r` (scaling 1, as in the paper).
        dropout (`float`, *optional*, defaults to `0.0`):
            Dropout probability applied to the adapter input, as LoRA's `lora_dropout`.
        fan_in_fan_out (`bool`, *optional*, defaults to `False`):
            `True` for layers storing weights as (in, out), e.g. GPT-2's `Conv1D` (set automatically).
        init_weights (`bool`, *optional*, defaults to `True`):
            `True` for the exact no-op initialisation; `False` makes every factor random and non-zero (for tests of
            the merge arithmetic only).

        > Parameters that control saving

        export_lora (`bool`, *optional*, defaults to `False`):
            Also write a standard PEFT LoRA export of the adapter (exact; see
            [`~trl_igrpo.tied_lora.export_lora`]) into `<save_directory>/lora` whenever the adapter is saved: every
            training checkpoint, the final `save_model` and the folder `push_to_hub` uploads.
        load_requires (`str`, *optional*, defaults to `LOAD_REQUIRES`):
            Not a setting. A note saved in `adapter_config.json` that says to `import trl_igrpo` before loading (PEFT
            cannot find the `TIEDLORA` type otherwise); always reset to the current note.
    """

    r: int = field(default=8, metadata={"help": "Rank of the tied A (r x in) and B (out x r) matrices."})
    target_modules: Union[list[str], str] | None = field(
        default=None,
        metadata={"help": "Module names or regex to adapt; None means q_proj, k_proj, v_proj (the paper's scope)."},
    )
    exclude_modules: Union[list[str], str] | None = field(
        default=None, metadata={"help": "Module names or regex to exclude from adaptation."}
    )
    fused_module_groups: list[list[str]] | None = field(
        default_factory=lambda: [list(FUSED_QKV)],
        metadata={
            "help": "Sibling modules that read the same input and act as one fused projection (shared tied A and "
            "per-layer u, own tied B and per-layer v). Default: the paper's fused QKV. None/[]: tie by shape only."
        },
    )
    train_A: bool = field(default=True, metadata={"help": "Train the tied down-projection A."})
    train_B: bool = field(default=True, metadata={"help": "Train the tied up-projection B."})
    train_u: bool = field(default=True, metadata={"help": "Train the per-layer rank-sized scaling u (else u = 1)."})
    train_v: bool = field(default=True, metadata={"help": "Train the per-layer output-sized scaling v (else v = 1)."})
    alpha: float | None = field(
        default=None, metadata={"help": "Scaling is alpha / r; None means alpha = r (scaling 1, as in the paper)."}
    )
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter input (like lora_dropout)."})
    fan_in_fan_out: bool = field(
        default=False, metadata={"help": "True if the target layer stores its weight as (in, out), like Conv1D."}
    )
    init_weights: bool = field(
        default=True, metadata={"help": "Exact no-op init (True) or all-random factors (False, tests only)."}
    )
    modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Modules besides the adapter layers to train in full and save."}
    )
    layers_to_transform: Union[list[int], int] | None = field(
        default=None, metadata={"help": "Only adapt these layer indices."}
    )
    layers_pattern: Union[list[str], str] | None = field(
        default=None, metadata={"help": "Name of the nn.ModuleList holding the layers, used with layers_to_transform."}
    )
    export_lora: bool = field(
        default=False,
        metadata={
            "help": "On every save_pretrained (checkpoints, final save, push_to_hub), also write a standard LoRA export "
            "of the adapter into <save_directory>/lora."
        },
    )
    load_requires: str = field(
        default=LOAD_REQUIRES,
        metadata={
            "help": "Not a setting: a note saved in adapter_config.json for readers who hit PEFT's KeyError: "
            "'TIEDLORA'. Always reset to the current note."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = TIED_LORA_PEFT_TYPE
        self.load_requires = LOAD_REQUIRES
        if isinstance(self.target_modules, (list, tuple)):
            self.target_modules = set(self.target_modules)
        if isinstance(self.exclude_modules, (list, tuple)):
            self.exclude_modules = set(self.exclude_modules)
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ValueError(f"`r` must be a positive integer, got {self.r!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {self.dropout!r}.")
        if self.alpha is not None and self.alpha <= 0:
            raise ValueError(f"`alpha` must be positive (or None for alpha = r), got {self.alpha!r}.")
        if not any((self.train_A, self.train_B, self.train_u, self.train_v)):
            raise ValueError(
                "At least one of `train_A`, `train_B`, `train_u`, `train_v` must be True; with all four frozen the "
                "adapter has nothing to train."
            )
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError("When `layers_pattern` is specified, `layers_to_transform` must also be specified.")
        self.fused_module_groups = self._validated_fused_module_groups(self.fused_module_groups)

    @staticmethod
    def _validated_fused_module_groups(groups) -> list[list[str]]:
        if groups is None:
            return []
        if isinstance(groups, str) or not all(isinstance(g, (list, tuple)) for g in groups):
            raise ValueError(
                f"`fused_module_groups` must be a list of lists of module names, e.g. [['q_proj', 'k_proj', "
                f"'v_proj']], got {groups!r}."
            )
        seen: set[str] = set()
        validated = []
        for group in groups:
            group = [str(name) for name in group]
            if len(group) < 2 or len(set(group)) != len(group):
                raise ValueError(f"`fused_module_groups` entry {group} must name at least two distinct modules.")
            if any("." in name for name in group):
                raise ValueError(f"`fused_module_groups` entry {group} must hold bare module names (no dots).")
            overlap = seen.intersection(group)
            if overlap:
                raise ValueError(f"`fused_module_groups`: module(s) {sorted(overlap)} appear in more than one group.")
            seen.update(group)
            validated.append(group)
        return validated

    def save_pretrained(self, save_directory: str, **kwargs) -> None:
        """PEFT's ``save_pretrained``, plus the loading note in the README.md that ``PeftModel.save_pretrained`` wrote
        into the same directory just before (a bare config save writes no README and gets none), plus, with
        ``export_lora``, the LoRA export of the adapter weights saved there (``PeftModel.save_pretrained`` writes the
        weights before the config)."""
        super().save_pretrained(save_directory, **kwargs)
        add_loading_note_to_model_card(save_directory)
        if self.export_lora:
            from .export import export_beside_saved_adapter

            export_beside_saved_adapter(save_directory, self)

    @property
    def scaling(self) -> float:
        """LoRA-style ``alpha / r``; 1.0 with the paper's ``alpha = r``."""
        return 1.0 if self.alpha is None else float(self.alpha) / self.r

    @property
    def configuration_name(self) -> str | None:
        """The paper's name of this (train_A, train_B, train_u, train_v) combination, or None if not established."""
        flags = (self.train_A, self.train_B, self.train_u, self.train_v)
        return next((name for name, value in TIED_LORA_CONFIGURATIONS.items() if value == flags), None)

    @classmethod
    def from_configuration(cls, name: str, **kwargs) -> TiedLoraConfig:
        """Build the paper's named configuration (``"TL5"``, ``"TL6"``); other fields are passed through."""
        key = name.upper()
        if key in UNKNOWN_TIED_LORA_CONFIGURATIONS:
            raise ValueError(
                f"The (A, B, u, v) trainability of {key} could not be established from the paper; set `train_A`, "
                f"`train_B`, `train_u`, `train_v` explicitly. Known names: {sorted(TIED_LORA_CONFIGURATIONS)}."
            )
        if key not in TIED_LORA_CONFIGURATIONS:
            raise ValueError(f"Unknown Tied-LoRA configuration {name!r}; known: {sorted(TIED_LORA_CONFIGURATIONS)}.")
        conflicting = {"train_A", "train_B", "train_u", "train_v"}.intersection(kwargs)
        if conflicting:
            raise ValueError(f"{sorted(conflicting)} are fixed by configuration {key}; do not pass them too.")
        train_A, train_B, train_u, train_v = TIED_LORA_CONFIGURATIONS[key]
        return cls(train_A=train_A, train_B=train_B, train_u=train_u, train_v=train_v, **kwargs)

    def zero_initialised_factor(self) -> str:
        """Which factor starts at zero so that delta W = 0 at init while a gradient still flows.

        The first *trainable* factor among B, v, u, A: LoRA's B = 0 when B trains; otherwise VeRA's convention of a
        zero output scaling; A = 0 only when it is the sole trainable factor (then B is random and frozen).
        """
        for factor, trainable in (("B", self.train_B), ("v", self.train_v), ("u", self.train_u), ("A", self.train_A)):
            if trainable:
                return factor
        raise AssertionError("unreachable: __post_init__ rejects configs with nothing to train")


def fused_qkv_trainable_parameters(
    hidden_size: int,
    num_layers: int,
    r: int,
    train_A: bool = True,
    train_B: bool = True,
    train_u: bool = True,
    train_v: bool = True,
    qkv_out_features: int | None = None,
) -> int:
    """Closed-form trainable parameter count of Tied-LoRA on the paper's fused QKV projection (Sec. 2 / Table 1).

    ``[A] d r + [B] D r + L ([u] r + [v] D)`` with ``D = qkv_out_features`` (``3d`` for multi-head attention, the
    paper's case). TL6 gives ``4dr + L(r + 3d)``; TL5 gives ``4dr``.
    """
    d = hidden_size
    out = 3 * d if qkv_out_features is None else qkv_out_features
    return int(train_A) * d * r + int(train_B) * out * r + num_layers * (int(train_u) * r + int(train_v) * out)


def lora_trainable_parameters(hidden_size: int, num_layers: int, r: int, fused_qkv: bool = True) -> int:
    """LoRA's count on q/k/v of a multi-head-attention model: ``4Ldr`` on a fused QKV projection (one A, one 3d x r B
    per layer, the paper's baseline), ``6Ldr`` on separate q/k/v modules (PEFT's LoRA with q_proj/k_proj/v_proj)."""
    d, L = hidden_size, num_layers
    return (4 if fused_qkv else 6) * L * d * r
