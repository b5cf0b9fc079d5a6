"""trl-igrpo: NVIDIA reasoning post-training recipes (iGRPO, RPO, Tied-LoRA, reasoning ON/OFF) on the TRL API."""

__version__ = "0.1.0"

from .igrpo_config import IGRPOConfig
from .igrpo_trainer import IGRPOTrainer

__all__ = ["IGRPOConfig", "IGRPOTrainer", "__version__"]
