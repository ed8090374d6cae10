"""Autodiff products of a denoiser: the Jacobian J = ∂f/∂y at one noisy image as a linear operator.

f is the [0, 1] denoiser y ↦ D(y, σ) (``output="denoised"``) or the network's raw output in its own
parameterization with respect to the native noisy image, y ↦ r(y, σ)/s (``output="raw"``, s the
native scale), see :func:`output_function`. :class:`JacobianOperator` gives products with blocks
of vectors: rows UJ (reverse mode, ``torch.func.vjp`` mapped with ``vmap``) and columns JV
(forward mode, ``torch.func.jvp``), with a fallback to ordinary batched passes for networks that
``vmap`` or forward mode cannot handle. It satisfies the :class:`biasprobe.eigensolvers.LinearOperator`
protocol, so every eigensolver runs on it unchanged.

These helpers know nothing of analyses or Datasets (as plenoptic keeps its autodiff helpers apart
from its methods); :mod:`biasprobe.analyses.jacobian` builds on them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from biasprobe.denoiser import Denoiser
from biasprobe.errors import InputError
from biasprobe.models.attention import explicit_math

OUTPUTS = ("denoised", "raw")
PRECISIONS = ("float32", "tf32", "bf16")
DEFAULT_MEMORY_BUDGET_CPU = 512 * 2**20
DEFAULT_MEMORY_FRACTION_CUDA = 0.5


def math_attention(denoiser: Denoiser) -> contextlib.AbstractContextManager[None]:
    """Route every attention layer of the denoiser through its explicit softmax path
    (:func:`biasprobe.models.attention.explicit_math`).

    Fused attention kernels have neither forward-mode derivatives nor ``vmap`` batching rules;
    the explicit path computes the same function with ordinary differentiable, batchable ops."""
    return explicit_math(denoiser.attention_modules().values())


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`; an error naming the parameter otherwise."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


@contextlib.contextmanager
def _precision(precision: str, device: torch.device) -> Iterator[None]:
    """float32 (TF32 off everywhere), tf32 (TF32 matmuls and convolutions on CUDA), or bf16 autocast."""
    check_precision(precision)
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    )
    try:
        with autocast:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def output_function(denoiser: Denoiser, sigma: float, output: str = "denoised") -> Callable:
    """The map y ↦ D(y, σ) (``denoised``) or y ↦ r(y, σ) / scale (``raw``, so that J = ∂r/∂y_n).

    ``scale`` is 2 for networks of native range [-1, 1] (y_n = 2y − 1), else 1.
    """
    if output == "denoised":
        return lambda y: denoiser.denoise(y, sigma)
    if output == "raw":
        scale = denoiser.native_scale.scale
        return lambda y: denoiser.raw_output(y, sigma) / scale
    raise InputError(f"output must be one of {OUTPUTS}, got {output!r}")


def _saved_bytes(fn: Callable, y: torch.Tensor) -> int:
    """Bytes of the activations (tensors that depend on y) that one forward pass of f at y saves
    for backward: a batched product carries about that much per vector."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if tensor.grad_fn is not None or tensor is y:
            total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn(y.clone().requires_grad_(True))
    return total


class JacobianOperator:
    """J = ∂f/∂y at one image y (1, C, H, W), for products with blocks of vectors (``torch.func``).

    The forward pass at y runs once and is kept (``torch.func.vjp``). :meth:`rows` maps its
    pullback over a block of cotangents with ``vmap`` (UJ: one batched backward, no repeated
    forward); :meth:`columns` maps ``torch.func.jvp`` over a block of tangents (JV: forward mode,
    the primal computed once per chunk). Networks that ``vmap`` or forward mode cannot handle
    (diffusers' UNets: a memory-format query in their backward, a view in their forward-mode
    group norm) fall back, once and for good (``vmap[kind]`` becomes False), to ordinary
    passes over a batch of copies of y: a backward for rows, a double backward for columns
    (Jv = ∂(Jᵀu)/∂u applied to v, about twice a row's cost). Attention layers run their explicit
    softmax path throughout (see :func:`math_attention`). Blocks are cut into chunks whose
    estimated memory (twice the activations saved for backward, per vector) fits
    ``memory_budget`` bytes (default: half the free GPU memory, or 512 MiB on the CPU).
    """

    def __init__(
        self,
        denoiser: Denoiser,
        y: torch.Tensor,
        sigma: float,
        *,
        output: str = "denoised",
        precision: str = "float32",
        memory_budget: float | None = None,
    ) -> None:
        self.denoiser = denoiser
        self.fn = output_function(denoiser, sigma, output)
        self.precision = precision
        self.device = y.device
        self.shape = tuple(y.shape[1:])
        self.dimension = y[0].numel()
        self.y = y.detach()
        self.vmap = {"rows": True, "columns": True}
        self.on_products: Callable[[int], None] = lambda count: None
        """Called with the number of vectors of every block product (progress reports)."""
        with self._context():
            self.chunk_size = _chunk_size(self.fn, self.y, memory_budget)
            with torch.no_grad():  # torch.func differentiates in y regardless; no graph to the weights
                value, self._pullback = torch.func.vjp(self.fn, self.y)
        self.value = value.detach().float()

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        with math_attention(self.denoiser), _precision(self.precision, self.device):
            yield

    def _vectors(self, block: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """A (b, d) block as b vectors shaped like y, (b, 1, C, H, W), on the operator's device."""
        return block.reshape(len(block), 1, *self.shape).to(self.device, dtype)

    def _map(self, kind: str, product: Callable, on_copies: Callable, vectors: torch.Tensor) -> torch.Tensor:
        """``product`` (one vector → one product) mapped over vectors (b, 1, C, H, W) with ``vmap``,
        or ``on_copies`` (a batch (n, C, H, W) → its products) chunk by chunk; (b, d) float32."""
        products = self._map_blocks(kind, product, on_copies, vectors)
        self.on_products(len(vectors))
        return products

    def _map_blocks(self, kind: str, product: Callable, on_copies: Callable, vectors: torch.Tensor) -> torch.Tensor:
        with self._context(), torch.no_grad():
            if self.vmap[kind]:
                try:
                    products = torch.func.vmap(product, chunk_size=self.chunk_size)(vectors)
                    return products.reshape(len(vectors), -1).float()
                except torch.OutOfMemoryError:
                    raise
                except (RuntimeError, NotImplementedError):
                    self.vmap[kind] = False
            with torch.enable_grad():
                products = [on_copies(chunk[:, 0]) for chunk in vectors.split(self.chunk_size)]
        return torch.cat(products).reshape(len(vectors), -1).float()

    def _copies(self, count: int) -> torch.Tensor:
        return self.y.expand(count, *self.shape).contiguous().requires_grad_(True)

    def rows(self, block: torch.Tensor) -> torch.Tensor:
        """U J for U of shape (b, d): the rows Jᵀu_i, returned as (b, d) float32."""

        def rows_on_copies(cotangents: torch.Tensor) -> torch.Tensor:
            primal = self._copies(len(cotangents))
            return torch.autograd.grad(self.fn(primal), primal, cotangents)[0]

        return self._map("rows", lambda u: self._pullback(u)[0], rows_on_copies, self._vectors(block, self.value.dtype))

    def columns(self, block: torch.Tensor) -> torch.Tensor:
        """J V for V of shape (b, d): the columns Jv_i, returned as (b, d) float32."""

        def column(tangent: torch.Tensor) -> torch.Tensor:
            return torch.func.jvp(self.fn, (self.y,), (tangent,))[1]

        def columns_on_copies(tangents: torch.Tensor) -> torch.Tensor:
            primal = self._copies(len(tangents))
            out = self.fn(primal)
            probe = torch.zeros_like(out, requires_grad=True)
            (rows,) = torch.autograd.grad(out, primal, probe, create_graph=True)  # Jᵀu, linear in u
            return torch.autograd.grad(rows, probe, tangents.to(rows.dtype))[0]

        return self._map("columns", column, columns_on_copies, self._vectors(block, self.y.dtype))

    def dense(self) -> torch.Tensor:
        """The full (d, d) Jacobian, J[i, j] = ∂f_i/∂y_j, on the operator's device, row block by row block."""
        return torch.cat([self.rows(block) for block in _basis_blocks(self.dimension, self.chunk_size, self.device)])


def images_per_batch(denoiser: Denoiser, y: torch.Tensor, sigma: float, *, output: str = "denoised",
                     precision: str = "float32", memory_budget: float | None = None) -> int:
    """How many images :func:`dense_jacobians` takes at once: as many whole sets of d row products (each
    vector costing twice the activations one image's forward saves, plus the vector) as ``memory_budget``
    holds (default as for :class:`JacobianOperator`); 1 when one image's d products already need chunks."""
    fn = output_function(denoiser, sigma, output)
    with math_attention(denoiser), _precision(precision, y.device):
        per_vector = _bytes_per_vector(fn, y[:1].detach())
    return int(max(1, _memory_budget(y.device, memory_budget) // (per_vector * y[0].numel())))


def _memory_budget(device: torch.device, memory_budget: float | None) -> float:
    if memory_budget is not None:
        return memory_budget
    if device.type == "cuda":
        return DEFAULT_MEMORY_FRACTION_CUDA * torch.cuda.mem_get_info(device)[0]
    return DEFAULT_MEMORY_BUDGET_CPU


def _bytes_per_vector(fn: Callable, y: torch.Tensor) -> int:
    """Memory one vector of a batched product at ``y`` (one image or several) takes: twice the activations
    the forward at ``y`` saves for backward, and the vector itself (float64 accounting, 8 bytes an entry)."""
    return 2 * _saved_bytes(fn, y) + 8 * y.numel()


def _chunk_size(fn: Callable, y: torch.Tensor, memory_budget: float | None) -> int:
    """Vectors per chunk of a product at ``y``: as many as ``memory_budget`` holds, at most d (one image's)."""
    dimension = y[0].numel()
    return int(max(1, min(dimension, _memory_budget(y.device, memory_budget) // _bytes_per_vector(fn, y))))


def _basis_blocks(dimension: int, size: int, device, dtype=torch.float32) -> Iterator[torch.Tensor]:
    """The rows of the d × d identity, ``size`` at a time (the cotangents of a dense Jacobian's row blocks)."""
    for start in range(0, dimension, size):
        count = min(size, dimension - start)
        block = torch.zeros(count, dimension, device=device, dtype=dtype)
        block[torch.arange(count), torch.arange(start, start + count)] = 1
        yield block


def dense_jacobians(
    denoiser: Denoiser,
    y: torch.Tensor,
    sigma: float,
    *,
    output: str = "denoised",
    precision: str = "float32",
    memory_budget: float | None = None,
    on_products: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, bool]:
    """The dense Jacobians J_p[i, j] = ∂f_i/∂y_j (P, d, d) at P noisy images y (P, C, H, W) and one σ, from one
    forward pass at all of them, and whether ``vmap`` did the products.

    The images pass through the network independently, so the cotangent e_k in every image's slot pulls
    back to row k of every J_p at once: one batched backward per block of rows for all P images, where
    :class:`JacobianOperator` takes one per image (each J_p equals its ``dense()`` to float rounding).
    ``on_products`` is called with the number of row products (P per cotangent) of every block. Networks
    that ``vmap`` cannot handle fall back to one :class:`JacobianOperator` per image.
    """
    count, shape, dimension = len(y), tuple(y.shape[1:]), y[0].numel()
    on_products = on_products or (lambda done: None)
    fn = output_function(denoiser, sigma, output)
    y = y.detach()
    with math_attention(denoiser), _precision(precision, y.device):
        chunk = _chunk_size(fn, y, memory_budget)
        with torch.no_grad():
            _, pullback = torch.func.vjp(fn, y)
        rows = []
        try:
            with torch.no_grad():
                for basis in _basis_blocks(dimension, chunk, y.device, y.dtype):
                    size = len(basis)
                    cotangents = basis.reshape(size, 1, *shape).expand(size, count, *shape)
                    rows.append(torch.func.vmap(lambda u: pullback(u)[0])(cotangents).reshape(size, count, -1).float())
                    on_products(size * count)
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, NotImplementedError):  # not vmappable: one operator (and its fallback) per image
            matrices = []
            for p in range(count):
                operator = JacobianOperator(denoiser, y[p:p + 1], sigma, output=output, precision=precision,
                                            memory_budget=memory_budget)
                operator.on_products = on_products
                matrices.append(operator.dense())
            return torch.stack(matrices), False
    return torch.cat(rows).permute(1, 0, 2).contiguous(), True


def jacobian_matrix(
    denoiser: Denoiser,
    y: torch.Tensor,
    sigma: float,
    *,
    output: str = "denoised",
    precision: str = "float32",
    memory_budget: float | None = None,
) -> torch.Tensor:
    """The dense Jacobian (d, d) of the denoiser (or its raw output) at one noisy image y."""
    y = denoiser.check_images(torch.as_tensor(y)).to(denoiser.device, torch.float32)
    if len(y) != 1:
        raise InputError(f"jacobian_matrix takes one image, got a batch of {len(y)}")
    operator = JacobianOperator(denoiser, y, sigma, output=output, precision=precision, memory_budget=memory_budget)
    return operator.dense()


__all__ = [
    "OUTPUTS",
    "PRECISIONS",
    "JacobianOperator",
    "dense_jacobians",
    "images_per_batch",
    "jacobian_matrix",
    "math_attention",
    "output_function",
]
