"""The class-conditional latent DiT of facebookresearch/DiT (Peebles & Xie 2023).

biasprobe's :class:`~biasprobe.models.dit.DiT` already follows the reference module layout and
computations (patch embedding, timestep MLP, adaLN-Zero blocks, final layer, unpatchify); the
reference adds a class-label embedding summed with the timestep embedding, and keeps its fixed
sin-cos position embedding as a saved tensor (``pos_embed``), which is loaded, not recomputed.
"""

from __future__ import annotations

import torch
from torch import nn

from biasprobe.errors import InputError
from biasprobe.models.dit import DiT
from biasprobe.models.unet_ddpm import conditioned_batch


class LabelEmbedding(nn.Module):
    """Class label → vector, a table of ``rows`` entries (``embedding_table``, as in the reference)."""

    def __init__(self, rows: int, width: int) -> None:
        super().__init__()
        self.embedding_table = nn.Embedding(rows, width)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(labels)


class ClassConditionalDiT(DiT):
    """Reference DiT: ``forward(x, t)`` conditions every block on t_embedder(t) + y_embedder(label).

    The label is the attribute :attr:`class_label`, the same for every image of a batch; by default
    the null class ``num_classes`` (the extra table row trained by label dropout for
    classifier-free guidance), i.e. the unconditional model.

    Parameters
    ----------
    input_size: side of the square latent; divisible by ``patch_size``.
    in_channels: latent channels (4 for the Stable Diffusion autoencoder).
    patch_size, depth, width, heads, mlp_ratio, learn_sigma: as in :class:`~biasprobe.models.dit.DiT`.
    num_classes: class labels 0 … num_classes − 1.
    null_class: whether the table has the extra null-class row (class dropout > 0 in training).
    class_label: the label fed to the model; None for the null class.
    """

    family = "dit-reference"

    def __init__(
        self,
        input_size: int = 32,
        in_channels: int = 4,
        patch_size: int = 2,
        depth: int = 28,
        width: int = 1152,
        heads: int = 16,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        null_class: bool = True,
        learn_sigma: bool = True,
        class_label: int | None = None,
    ) -> None:
        super().__init__(
            image_size=input_size,
            channels=in_channels,
            patch_size=patch_size,
            depth=depth,
            width=width,
            heads=heads,
            mlp_ratio=mlp_ratio,
            learn_sigma=learn_sigma,
        )
        self.config = {
            "input_size": input_size,
            "in_channels": in_channels,
            "patch_size": patch_size,
            "depth": depth,
            "width": width,
            "heads": heads,
            "mlp_ratio": mlp_ratio,
            "num_classes": num_classes,
            "null_class": null_class,
            "learn_sigma": learn_sigma,
        }
        self.num_classes = num_classes
        self.null_class = null_class
        self.y_embedder = LabelEmbedding(num_classes + int(null_class), width)
        self.register_buffer("pos_embed", self.pos_embed, persistent=True)  # saved, as in the reference
        self.class_label = self._checked_label(class_label)

    def _checked_label(self, label: int | None) -> int:
        if label is None:
            if not self.null_class:
                raise InputError(
                    "this DiT was trained without label dropout, so it has no null class: give a class label"
                )
            return self.num_classes
        highest = self.num_classes if self.null_class else self.num_classes - 1
        if not 0 <= int(label) <= highest:
            raise InputError(
                f"class label {label} is outside 0 … {highest} (the null class is {self.num_classes})"
            )
        return int(label)

    def set_class_label(self, label: int | None) -> None:
        """Condition on ``label`` from now on (None: the null class, the unconditional model)."""
        self.class_label = self._checked_label(label)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Output (B, out_channels, H, W): ε̂ first, then the learned variance if any."""
        t = conditioned_batch(x, t, (self.channels, self.image_size, self.image_size))
        labels = torch.full((x.shape[0],), self.class_label, dtype=torch.long, device=x.device)
        conditioning = self.t_embedder(t) + self.y_embedder(labels)
        tokens = self.x_embedder(x) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens, conditioning, self.grid)
        return self.unpatchify(self.final_layer(tokens, conditioning))
