"""Supervised warm-up (SFT): data sources, traces and the training loop."""

from smarttuner.sft.records import SFTRecord, format_target
from smarttuner.sft.trainer import train_sft

__all__ = ["SFTRecord", "format_target", "train_sft"]
