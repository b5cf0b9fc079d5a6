"""trl-igrpo: NVIDIA reasoning post-training recipes (iGRPO, RPO, Tied-LoRA, reasoning ON/OFF) on the TRL API."""

__version__ = "0.1.0"

from .curriculum import (
    CurriculumConfigMixin,
    CurriculumGRPOConfig,
    CurriculumGRPOTrainer,
    DynamicSamplingMixin,
    ProgressiveBatchingMixin,
    ProgressiveBatchSampler,
    compute_pass_rates,
    filter_by_pass_rate,
)
from .hub import HubMixin, HubTokenError, require_hub_token
from .igrpo_config import IGRPOConfig
from .igrpo_trainer import IGRPOTrainer
from .online_rpo_config import OnlineRPOConfig
from .online_rpo_trainer import OnlineRPOTrainer
from .rpo_config import RPOConfig
from .rpo_losses import rpo_bwd_kl, rpo_fwd_kl, rpo_listwise, rpo_sq
from .rpo_trainer import DataCollatorForRPO, RPOTrainer
from .tied_lora import TiedLoraConfig, TiedLoraModel  # importing registers Tied-LoRA with PEFT
from .vllm_sync import VLLMCPUSyncMixin

__all__ = [
    "CurriculumConfigMixin",
    "CurriculumGRPOConfig",
    "CurriculumGRPOTrainer",
    "DataCollatorForRPO",
    "DynamicSamplingMixin",
    "HubMixin",
    "HubTokenError",
    "IGRPOConfig",
    "IGRPOTrainer",
    "OnlineRPOConfig",
    "OnlineRPOTrainer",
    "ProgressiveBatchSampler",
    "ProgressiveBatchingMixin",
    "RPOConfig",
    "RPOTrainer",
    "TiedLoraConfig",
    "TiedLoraModel",
    "VLLMCPUSyncMixin",
    "__version__",
    "compute_pass_rates",
    "filter_by_pass_rate",
    "require_hub_token",
    "rpo_bwd_kl",
    "rpo_fwd_kl",
    "rpo_listwise",
    "rpo_sq",
]
