"""The Jacobian J = ∂D(y)/∂y of a denoiser at noisy images, and its eigen- and singular values.

At y = x + σz the Jacobian of the [0, 1] denoiser D (``output="denoised"``), or of the network's
raw output r in its own parameterization with respect to the native noisy image y_n
(``output="raw"``: J_raw = ∂r/∂y_n, so D's Jacobian is I − J_raw for residual networks and
I − σ_n J_raw for ε-prediction), is analysed through

- the eigenpairs (λ_k, e_k) of the symmetrised operator S = (J + Jᵀ)/2, λ_0 ≥ λ_1 ≥ …;
- the singular triplets (s_k, u_k, v_k) of J, with cos(u_k, v_k) (1 for a symmetric PSD J);
- the asymmetry ‖J − Jᵀ‖_F / ‖J‖_F and the effective dimensionality tr(J).

Three methods compute them (see ``docs/methods/jacobian.md``):

``dense``
    J row block by row block, UJ for chunks U of the identity, each chunk one vmapped backward
    through the forward pass kept at y (:class:`JacobianOperator`); then exact eigh/SVD in float64.
``lanczos``
    ARPACK (``scipy.sparse.linalg.eigsh`` / ``svds``) on matrix-free operators; each S-product
    is one forward-mode product Jv and one reverse-mode product Jᵀv.
``randomized``
    Block Krylov iteration on S from a seeded Gaussian block, with Rayleigh–Ritz for the
    eigenpairs and a two-sided projection of J onto the same subspace for the singular triplets,
    growing until the top-k residuals fall below ``tolerance``.

The linear algebra here needs only torch and numpy (scipy for ``lanczos``); xarray is imported
when a Dataset is assembled, so GPU benchmarks run on bare torch installations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from biasprobe.denoiser import NATIVE_RANGES, Denoiser
from biasprobe.errors import InputError
from biasprobe.noise import noisy

if TYPE_CHECKING:
    import xarray as xr

METHODS = ("auto", "dense", "lanczos", "randomized")
OUTPUTS = ("denoised", "raw")
PRECISIONS = ("float32", "tf32", "bf16")

DENSE_MAX_DIMENSION = 4096
"""``method="auto"`` builds J densely up to this many pixels × channels (J: 64 MiB in float32)."""
STORED_VECTORS_SMALL = 1024
"""Without ``top_k``, every eigenvector is stored up to this dimension, else :data:`STORED_VECTORS_LARGE`."""
STORED_VECTORS_LARGE = 64
COLUMN_COST = 1.4
"""Cost of a forward-mode product Jv in reverse-mode rows uᵀJ (measured on the default bias-free
UNet at 32×32: 1.2–1.5 on the CPU for blocks of 16–128 vectors, 1.2 on an H200)."""
DEFAULT_MEMORY_BUDGET_CPU = 512 * 2**20
DEFAULT_MEMORY_FRACTION_CUDA = 0.5


# --------------------------------------------------------------------------- the operator


@contextlib.contextmanager
def math_attention(denoiser: Denoiser) -> Iterator[None]:
    """Route every attention layer through its explicit softmax path.

    Fused attention kernels have neither forward-mode derivatives nor ``vmap`` batching rules;
    the explicit path computes the same function with ordinary differentiable, batchable ops."""
    idle = [m for m in denoiser.attention_modules().values() if m.observer is None]
    for module in idle:
        module.observer = _ignore_attention
    try:
        yield
    finally:
        for module in idle:
            module.observer = None


def _ignore_attention(module, probs) -> None:
    """An observer that only switches a :class:`GridAttention` to its math path."""


@contextlib.contextmanager
def _precision(precision: str, device: torch.device) -> Iterator[None]:
    """float32 (TF32 off everywhere), tf32 (TF32 matmuls and convolutions on CUDA), or bf16 autocast."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
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
        scale = NATIVE_RANGES[getattr(denoiser, "native_range", "unit")][0]
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
        with self._context():
            saved = _saved_bytes(self.fn, self.y)
            with torch.no_grad():  # torch.func differentiates in y regardless; no graph to the weights
                value, self._pullback = torch.func.vjp(self.fn, self.y)
        self.value = value.detach().float()
        if memory_budget is None:
            if self.device.type == "cuda":
                memory_budget = DEFAULT_MEMORY_FRACTION_CUDA * torch.cuda.mem_get_info(self.device)[0]
            else:
                memory_budget = DEFAULT_MEMORY_BUDGET_CPU
        per_vector = 2 * saved + 8 * self.dimension
        self.chunk_size = int(max(1, min(self.dimension, memory_budget // per_vector)))

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
        rows = []
        for start in range(0, self.dimension, self.chunk_size):
            count = min(self.chunk_size, self.dimension - start)
            identity = torch.zeros(count, self.dimension, device=self.device)
            identity[torch.arange(count), torch.arange(start, start + count)] = 1
            rows.append(self.rows(identity))
        return torch.cat(rows)


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


# --------------------------------------------------------------------------- decompositions


@dataclass
class Decomposition:
    """Eigen- and singular values of J at one noisy image, vectors for the first ``stored`` ranks.

    ``spectrum`` and ``singular_spectrum`` hold every value the method computed (all d for
    ``dense``); the per-rank arrays hold the first ``stored`` ones. Residuals are relative:
    ‖S e − λ e‖/|λ| (``eigen_residual``), ‖J e − λ e‖/|λ| (``jacobian_residual``), and
    √(‖J v − s u‖² + ‖Jᵀu − s v‖²)/s (``singular_residual``).
    """

    spectrum: np.ndarray
    singular_spectrum: np.ndarray
    eigenvectors: np.ndarray  # (stored, d)
    eigen_residual: np.ndarray
    jacobian_residual: np.ndarray
    singular_cosine: np.ndarray
    singular_residual: np.ndarray
    trace: float
    asymmetry: float
    products: int  # J-products (rows + columns) spent, 0 for dense (d rows)


def _canonical_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Per-column signs (±1) that make each column's largest-magnitude entry positive."""
    index = vectors.abs().argmax(dim=0)
    signs = torch.sign(vectors[index, torch.arange(vectors.shape[1], device=vectors.device)])
    return torch.where(signs == 0, torch.ones_like(signs), signs)


def _relative(residual: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return residual.norm(dim=0) / scale.abs().clamp_min(torch.finfo(scale.dtype).tiny)


def _lift(basis: torch.Tensor | None, coefficients: torch.Tensor) -> torch.Tensor:
    """Q C, with Q = None standing for the identity (the dense case)."""
    return coefficients if basis is None else basis @ coefficients


def _eigenpairs(basis: torch.Tensor | None, j_basis: torch.Tensor, jt_basis: torch.Tensor, stored: int) -> dict:
    """Rayleigh–Ritz on S over the orthonormal basis Q (d, m) from JQ and JᵀQ: eig(Qᵀ S Q).

    Exact for Q = I (``basis=None``)."""
    s_basis = (j_basis + jt_basis) / 2
    projected = _lift(None if basis is None else basis.T, s_basis)
    values, ritz = torch.linalg.eigh((projected + projected.T) / 2)
    values, ritz = values.flip(0), ritz.flip(1)[:, :stored]
    ritz = ritz * _canonical_signs(_lift(basis, ritz))
    vectors, top = _lift(basis, ritz), values[:stored]
    return {
        "spectrum": values.cpu().numpy(),
        "eigenvectors": vectors.T.cpu().numpy(),
        "eigen_residual": _relative(s_basis @ ritz - vectors * top, top).cpu().numpy(),
        "jacobian_residual": _relative(j_basis @ ritz - vectors * top, top).cpu().numpy(),
    }


def _singular_triplets(
    left: torch.Tensor | None,
    right: torch.Tensor | None,
    j_right: torch.Tensor,
    jt_left: torch.Tensor,
    stored: int,
) -> dict:
    """Two-sided projection: svd(Uᵀ J V) = L Σ Rᵀ gives u = U L, v = V R (exact for U = V = I)."""
    projected = _lift(None if left is None else left.T, j_right)
    rotate_left, singular, rotate_right_t = torch.linalg.svd(projected)
    rotate_left, rotate_right = rotate_left[:, :stored], rotate_right_t.T[:, :stored]
    u, v, s = _lift(left, rotate_left), _lift(right, rotate_right), singular[:stored]
    mismatch = (j_right @ rotate_right - u * s).square().sum(0) + (jt_left @ rotate_left - v * s).square().sum(0)
    return {
        "singular_spectrum": singular.cpu().numpy(),
        "singular_cosine": (u * v).sum(0).cpu().numpy(),
        "singular_residual": (mismatch.sqrt() / s.clamp_min(torch.finfo(s.dtype).tiny)).cpu().numpy(),
    }


def _dense(operator: JacobianOperator, stored: int) -> Decomposition:
    jac = operator.dense().double()
    return Decomposition(
        **_eigenpairs(None, jac, jac.T, stored),
        **_singular_triplets(None, None, jac, jac.T, stored),
        trace=float(jac.trace()),
        asymmetry=float(torch.linalg.matrix_norm(jac - jac.T) / torch.linalg.matrix_norm(jac)),
        products=operator.dimension,
    )


def _probe_estimates(probes: torch.Tensor, j_probes: torch.Tensor, jt_probes: torch.Tensor) -> tuple[float, float]:
    """Hutchinson estimates from Gaussian probes Ω (d, b): tr(J) ≈ tr(ΩᵀJΩ)/b and
    ‖J − Jᵀ‖_F / ‖J‖_F ≈ ‖(J − Jᵀ)Ω‖_F / ‖JΩ‖_F."""
    trace = float((probes * j_probes).sum() / probes.shape[1])
    asymmetry = float((j_probes - jt_probes).norm() / j_probes.norm())
    return trace, asymmetry


def _gaussian_block(dimension: int, count: int, seed: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randn(dimension, count, generator=generator, dtype=torch.float64).to(device)


def _columns(operator: JacobianOperator, block: torch.Tensor) -> torch.Tensor:
    """J B for a (d, b) float64 block, in float64."""
    return operator.columns(block.T.float()).T.double()


def _rows(operator: JacobianOperator, block: torch.Tensor) -> torch.Tensor:
    """Jᵀ B for a (d, b) float64 block, in float64."""
    return operator.rows(block.T.float()).T.double()


def _products(operator: JacobianOperator, block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(J B, Jᵀ B): S B is their mean."""
    return _columns(operator, block), _rows(operator, block)


def _randomized(
    operator: JacobianOperator, top_k: int, tolerance: float, seed: int, max_dimension: int | None
) -> Decomposition:
    """Block Krylov on S with full reorthogonalisation, from a Gaussian block of b = max(16, k/2)
    vectors (also the probes of tr(J) and the asymmetry); stops, once the basis holds k vectors,
    when every top-k residual ‖Se − λe‖/|λ| is below ``tolerance`` or the subspace
    reaches ``max_dimension`` (default :func:`krylov_limit`). Blocks smaller than k reach the
    tolerance in fewer products (a higher Krylov degree for the same subspace size): at k = 32,
    d = 1024, 416–576 products against 640–832 with b = 1.25 k on bias-free UNets."""
    d = operator.dimension
    block_size = min(d, max(16, top_k // 2))
    limit = min(d, max_dimension or krylov_limit(d, top_k))
    probes = _gaussian_block(d, block_size, seed, operator.device)
    basis, triangle = torch.linalg.qr(probes)
    j_basis, jt_basis = _products(operator, basis)
    trace, asymmetry = _probe_estimates(probes, j_basis @ triangle, jt_basis @ triangle)
    while True:
        eigen = _eigenpairs(basis, j_basis, jt_basis, top_k)
        if (basis.shape[1] >= top_k and eigen["eigen_residual"].max() < tolerance) or basis.shape[1] >= limit:
            break
        latest = (j_basis[:, -block_size:] + jt_basis[:, -block_size:]) / 2
        for _ in range(2):  # classical Gram–Schmidt twice is enough in float64
            latest = latest - basis @ (basis.T @ latest)
        grow = min(latest.shape[1], limit - basis.shape[1])
        new = torch.linalg.qr(latest[:, :grow])[0]
        j_new, jt_new = _products(operator, new)
        basis = torch.cat([basis, new], dim=1)
        j_basis, jt_basis = torch.cat([j_basis, j_new], dim=1), torch.cat([jt_basis, jt_new], dim=1)
    singular = _singular_triplets(basis, basis, j_basis, jt_basis, top_k)
    eigen["spectrum"] = eigen["spectrum"][:top_k]
    singular["singular_spectrum"] = singular["singular_spectrum"][:top_k]
    return Decomposition(**eigen, **singular, trace=trace, asymmetry=asymmetry, products=2 * basis.shape[1])


def _lanczos(operator: JacobianOperator, top_k: int, tolerance: float, seed: int, probes: int = 32) -> Decomposition:
    """ARPACK: eigsh on S (largest algebraic) and svds on J, one vector per product; then one block
    product of the results for the residuals, and ``probes`` Gaussian probes for tr(J) and asymmetry."""
    from scipy.sparse.linalg import LinearOperator, eigsh, svds

    d = operator.dimension
    spent = 0

    def apply(vector: np.ndarray, transpose: bool) -> np.ndarray:
        nonlocal spent
        spent += 1
        block = torch.as_tensor(vector.reshape(1, -1), dtype=torch.float32)
        product = operator.rows(block) if transpose else operator.columns(block)
        return product[0].double().cpu().numpy()

    symmetric = LinearOperator((d, d), matvec=lambda v: (apply(v, False) + apply(v, True)) / 2, dtype=np.float64)
    jac = LinearOperator((d, d), matvec=lambda v: apply(v, False), rmatvec=lambda v: apply(v, True), dtype=np.float64)
    start = np.random.default_rng(seed).standard_normal(d)
    vectors = eigsh(symmetric, k=top_k, which="LA", tol=tolerance, v0=start)[1]
    left, _, right_t = svds(jac, k=top_k, tol=tolerance, v0=start)

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.linalg.qr(torch.from_numpy(np.ascontiguousarray(array)))[0].to(operator.device)

    basis, left, right = tensor(vectors), tensor(left), tensor(right_t.T)
    j_basis, jt_basis = _products(operator, basis)
    probe_block = _gaussian_block(d, probes, seed, operator.device)
    trace, asymmetry = _probe_estimates(probe_block, *_products(operator, probe_block))
    return Decomposition(
        **_eigenpairs(basis, j_basis, jt_basis, top_k),
        **_singular_triplets(left, right, _columns(operator, right), _rows(operator, left), top_k),
        trace=trace,
        asymmetry=asymmetry,
        products=spent + 4 * top_k + 2 * probes,
    )


def krylov_limit(dimension: int, top_k: int) -> int:
    """The largest subspace the randomized method builds for ``top_k`` eigenpairs: min(d, 12·k + 32)."""
    return min(dimension, 12 * top_k + 32)


def choose_method(method: str, dimension: int, top_k: int | None) -> str:
    """Resolve ``auto``: randomized when J is too large to build (d > 4096), or when even its
    worst case, :func:`krylov_limit` rows and columns, costs less than the d rows of dense."""
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    if method != "auto":
        return method
    if dimension > DENSE_MAX_DIMENSION:
        return "randomized"
    if top_k is not None and krylov_limit(dimension, top_k) * (1 + COLUMN_COST) < dimension:
        return "randomized"
    return "dense"


def decompose(
    operator: JacobianOperator,
    method: str,
    top_k: int | None = None,
    *,
    tolerance: float = 1e-3,
    seed: int = 0,
    max_dimension: int | None = None,
) -> Decomposition:
    """Eigen- and singular values of the operator's J by ``method`` (``auto`` resolved here)."""
    d = operator.dimension
    stored = top_k or (d if d <= STORED_VECTORS_SMALL else STORED_VECTORS_LARGE)
    if not 1 <= stored <= d:
        raise InputError(f"top_k must be between 1 and d = {d}, got {top_k}")
    method = choose_method(method, d, top_k)
    if method == "dense":
        return _dense(operator, stored)
    if stored >= d:
        raise InputError(f"the {method} method needs top_k < d = {d}; use method='dense' for every eigenpair")
    if method == "randomized":
        return _randomized(operator, stored, tolerance, seed, max_dimension)
    return _lanczos(operator, stored, tolerance, seed)


# --------------------------------------------------------------------------- the analysis


def jacobian(
    denoiser: Denoiser,
    images: torch.Tensor,
    sigmas: Sequence[float] | None = None,
    timesteps: Sequence[float] | None = None,
    *,
    top_k: int | None = None,
    method: str = "auto",
    output: str = "denoised",
    precision: str = "float32",
    tolerance: float = 1e-3,
    memory_budget: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> xr.Dataset:
    """Eigen- and singular analysis of the denoiser's Jacobian at y = x + σz, for every image and σ.

    Parameters
    ----------
    denoiser: any :class:`~biasprobe.denoiser.Denoiser`.
    images: clean images (B, C, H, W) or (C, H, W) in [0, 1].
    sigmas, timesteps: the noise levels, as σ on the [0, 1] scale or as diffusion steps t.
    top_k: eigenpairs to compute (matrix-free methods) or eigenvectors to store (dense); default
        every one for d ≤ 1024, else 64.
    method: ``dense``, ``lanczos``, ``randomized`` or ``auto`` (see :func:`choose_method`).
    output: ``denoised`` (J of D) or ``raw`` (J of the network output in native units).
    precision: ``float32``, ``tf32`` (CUDA) or ``bf16`` for the network passes; the linear
        algebra is always float64.
    tolerance: residual ‖Se − λe‖/|λ| at which the matrix-free methods stop.
    memory_budget: bytes for one chunk of batched products (default: see :class:`JacobianOperator`).
    seed: seeds the noise (per image and σ, through :func:`~biasprobe.analyses.base.noise_seed`)
        and the random start blocks.

    Returns
    -------
    Dataset with, per (image, sigma): ``noisy``, ``denoised``, ``effective_dimension`` (tr J),
    ``asymmetry``; per rank: ``eigenvalue``, ``eigenvector`` (image, sigma, rank, channel, y, x),
    ``eigen_residual``, ``jacobian_residual``, ``singular_value``, ``singular_cosine``,
    ``singular_residual``; per index (every computed value): ``spectrum`` and
    ``singular_spectrum``.
    """

    from biasprobe.analyses.base import base_dataset, noise_seed, prepare, with_provenance
    from biasprobe.progress import track

    if output not in OUTPUTS:
        raise InputError(f"output must be one of {OUTPUTS}, got {output!r}")
    images, sigma, steps = prepare(denoiser, images, sigmas, timesteps)
    d = images[0].numel()
    resolved = choose_method(method, d, top_k)
    pairs = [(i, j) for i in range(len(images)) for j in range(len(sigma))]
    results: dict[tuple[int, int], Decomposition] = {}
    noisy_images = np.zeros((len(images), len(sigma), *images.shape[1:]), dtype=np.float32)
    denoised = np.zeros_like(noisy_images)
    vmapped = True
    for i, j in track(pairs, "Jacobians", total=len(pairs), enabled=progress):
        pair_seed = noise_seed(seed, i, j)
        y = noisy(images[i : i + 1], float(sigma[j]), pair_seed)
        operator = JacobianOperator(
            denoiser, y, float(sigma[j]), output=output, precision=precision, memory_budget=memory_budget
        )
        results[i, j] = decompose(operator, resolved, top_k, tolerance=tolerance, seed=pair_seed + 1)
        vmapped &= all(operator.vmap.values())
        noisy_images[i, j] = y[0].cpu().numpy()
        with torch.no_grad():
            denoised[i, j] = denoiser.denoise(y, float(sigma[j]))[0].float().cpu().numpy()

    def stack(name: str) -> np.ndarray:
        return np.stack([np.stack([getattr(results[i, j], name) for j in range(len(sigma))])
                         for i in range(len(images))])

    ranks = results[0, 0].eigenvectors.shape[0]
    count = len(results[0, 0].spectrum)
    field = ("image", "sigma", "channel", "y", "x")
    per_rank = ("image", "sigma", "rank")
    per_index = ("image", "sigma", "index")
    dataset = base_dataset(images, sigma, steps)
    dataset = dataset.assign(
        noisy=(field, noisy_images, {"long_name": "noisy image y = x + σz", "units": "[0, 1]"}),
        denoised=(field, denoised, {"long_name": "denoised image D(y)", "units": "[0, 1]"}),
        eigenvalue=(per_rank, stack("spectrum")[..., :ranks], {"long_name": "eigenvalue λ of S = (J + Jᵀ)/2"}),
        eigenvector=(
            ("image", "sigma", "rank", "channel", "y", "x"),
            stack("eigenvectors").reshape(len(images), len(sigma), ranks, *images.shape[1:]).astype(np.float32),
            {"long_name": "unit eigenvector e of S, largest entry positive"},
        ),
        eigen_residual=(per_rank, stack("eigen_residual"), {"long_name": "‖Se − λe‖/|λ|"}),
        jacobian_residual=(per_rank, stack("jacobian_residual"), {"long_name": "‖Je − λe‖/|λ|"}),
        singular_value=(per_rank, stack("singular_spectrum")[..., :ranks], {"long_name": "singular value s of J"}),
        singular_cosine=(per_rank, stack("singular_cosine"), {"long_name": "cos(u, v) of the singular vectors"}),
        singular_residual=(
            per_rank, stack("singular_residual"), {"long_name": "√(‖Jv − su‖² + ‖Jᵀu − sv‖²)/s"}
        ),
        spectrum=(per_index, stack("spectrum"), {"long_name": "every computed eigenvalue of S"}),
        singular_spectrum=(per_index, stack("singular_spectrum"), {"long_name": "every computed singular value of J"}),
        effective_dimension=(
            ("image", "sigma"), stack("trace"),
            {"long_name": "effective dimensionality tr(J)", "estimator": "exact" if resolved == "dense"
             else "Hutchinson (Gaussian probes)"},
        ),
        asymmetry=(
            ("image", "sigma"), stack("asymmetry"),
            {"long_name": "‖J − Jᵀ‖_F / ‖J‖_F", "estimator": "exact" if resolved == "dense"
             else "Gaussian probes"},
        ),
        products=(("image", "sigma"), stack("products"), {"long_name": "Jacobian-vector products spent"}),
    )
    dataset = dataset.assign_coords(
        rank=("rank", np.arange(ranks), {"long_name": "eigenpair index k, λ_0 largest"}),
        index=("index", np.arange(count), {"long_name": "index k of every computed value"}),
    )
    return with_provenance(
        dataset, denoiser, "jacobian", seed,
        method=resolved, output=output, precision=precision, tolerance=tolerance,
        dimension=d, products_through="torch.func.vmap" if vmapped else "batches of copies of y",
    )


__all__ = [
    "DENSE_MAX_DIMENSION",
    "METHODS",
    "OUTPUTS",
    "PRECISIONS",
    "Decomposition",
    "JacobianOperator",
    "choose_method",
    "decompose",
    "jacobian",
    "jacobian_matrix",
    "krylov_limit",
    "output_function",
]
