"""What configures ``deepfeat finetune`` by default (plain values, no torch import: the command
line reads its defaults from here)."""
from __future__ import annotations

from ..training.config import TrainConfig

#: How a fine-tuned CNN trains by default: AdamW, cosine decay after one warm-up epoch.
FINETUNE_TRAINING = TrainConfig(epochs=30, batch_size=32, optimizer="adamw", learning_rate=1e-3, weight_decay=1e-2,
                                schedule="cosine", warmup_epochs=1)
DEFAULT_NETWORK = "efficientnet_lite0"
DEFAULT_TRAIN_BLOCKS = 2  #: trainable stages at the end of the network (the rest is frozen, its activations cached)
DEFAULT_MIXUP = 0.2  #: MixUp's Beta(α, α), on by default as in the fine-tuning papers deepfeat follows
DEFAULT_AUGMENT = "mixup"  #: augmentations of `deepfeat finetune --augment`
MASKED_COPIES = 2  #: SpecAugment copies of each clip's spectrogram when specaugment is on
#: inner validation split of fine-tuning's training clips (0: none; the last epoch's weights are kept): on ESC-10
#: (test fold 5) 0.1 cost 6 devel points (84.7 vs 90.9 %), its 32 clips too few to pick an epoch by
VALIDATION_FRACTION = 0.0
