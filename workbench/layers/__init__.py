"""Building blocks of the models: the ladder of projectors, feature standardization, a convolutional stem."""
from .attention import use_fused_attention
from .conv_stem import ConvStemEmbed
from .ladder import FusedLadder, Ladder, make_ladder, resize_tokens, select_blocks
from .standardize import STANDARDIZERS, PhiS, RunningStandardizer, Standardizer, batch_weight, make_standardizer

__all__ = ["STANDARDIZERS", "batch_weight", "ConvStemEmbed", "FusedLadder", "Ladder", "make_ladder",
           "make_standardizer", "PhiS", "resize_tokens", "RunningStandardizer", "select_blocks", "Standardizer",
           "use_fused_attention"]
