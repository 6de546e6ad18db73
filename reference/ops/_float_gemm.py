"""Float32 linear and conv2d in the summation orders of torch's CPU libraries (profile
`float_gemm == "mkl2024.2-amd"`: oneMKL 2024.2 and oneDNN 3.12, as bundled with torch
2.13.0 and 2.14.1, on an AMD CPU, MKL_CBWR unset). Verified on AMD CPUs with AVX-512; on
an AVX2-only AMD EPYC (torch 2.13.0) the same MKL and channels_last oneDNN orders hold, and
oneDNN's NCHW conv differs (ISA-aware through the profile's `avx512`, see `_onednn_conv`).

The orders were found by probing torch (absorption probes: two +-2^40 terms among ones
cancel where their partial sums first meet, which reveals the summation tree; then
random data to settle fma versus multiply-and-add) and are checked only against torch
(docs/spec.md, "Float islands", has the figures). Nothing is derived from MKL source.

Which library runs (evidence: MKL_VERBOSE / ONEDNN_VERBOSE, ATen source):
- `aten::linear` of a 2-d input with a bias is `addmm` (ATen `linear`), which calls
  MKL `SGEMM('T', 'N', M=out_features, n=batch, K=in_features)` with C pre-filled with
  the bias and beta = 1 (MKL_VERBOSE `SGEMM(T,N,10,2,32,...)`; oneDNN is silent).
- `aten::conv2d`: ATen `ConvParams::use_mkldnn` (Convolution.cpp) picks oneDNN
  (`brg_conv_fwd:avx512_core` / `brg_conv_fwd:avx2` for channels_last input,
  `jit:avx512_core` / `jit:avx2` for NCHW), else `slow_conv2d` = im2col + the same MKL SGEMM.

Every function here takes the shapes it was verified for; `sgemm_order_known` and
`conv_order_known` say which, and the caller (float_ops) keeps its float64 computation
for anything else.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..numerics import fma32, ieee_float_ops

# MKL's fma kernel sums K in blocks of 192 (probed for K 16..1024).
FMA_K_BLOCK = 192
# oneDNN's NCHW convolution blocks input channels by the vector width: jit:avx512_core
# (nChw16c) sums one fma chain per 16-channel block; jit:avx2 (nChw8c) runs its 8-channel
# blocks through one chain.
ONEDNN_NCHW_BLOCK = 16
ONEDNN_AVX2_NCHW_BLOCK = 8
# Verified envelope of the MKL SGEMM model (random sweeps on 2.13.0 and 2.14.1 up to these
# sizes; slow_conv2d passes its OH*OW output positions as the batch n).
MAX_SGEMM_N, MAX_SGEMM_K, MAX_SGEMM_M = 1024, 1024, 1024


def sgemm_order_known(n: int, m: int, k: int, num_threads: int = 1) -> bool:
    """Whether `mkl_sgemm_tn` models SGEMM('T','N', m, n, k) run with `num_threads` (1 or 2):
    at least 4 output rows, inside the verified envelope, and K a multiple of 8 for the
    non-fma kernels (others unprobed).

    Excluded: 2 threads with a batch of 5-7 or 9-11. MKL then splits the batch (measured:
    the first 4*floor(n/4) columns take the fma kernel, the n mod 4 others the dot kernel)
    once the product is large enough to thread (M=12, K=72, n=5 is; M=16, K=16, n=11 is
    not); that threshold is not probed, so such shapes keep the float64 computation.
    """
    if not (4 <= m <= MAX_SGEMM_M and 1 <= n <= MAX_SGEMM_N and 1 <= k <= MAX_SGEMM_K and num_threads in (1, 2)):
        return False
    if num_threads > 1 and 4 < n < 12 and n % 4:
        return False
    return _uses_fma_kernel(n, m) or k % 8 == 0


def _uses_fma_kernel(n: int, m: int) -> bool:
    return n >= 4 and m >= 12


def mkl_sgemm_tn(x: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """`bias + x @ w.T` for float32 x (n, K), w (M, K), bias (M,): MKL SGEMM('T','N', M, n, K)
    with C = bias and beta 1. MKL picks the kernel by shape (probed):

    - n >= 4 and M >= 12: the fma kernel (`_fma_kernel`);
    - n == 1: the gemv kernel (`_gemv_kernel`);
    - otherwise (n in {2, 3}, or M < 12): the dot kernel (`_dot_kernel`).

    Hand-worked (gemv, n = 1, M = 4, K = 8, bias 0), row w = [2^24, 1, 1, 1, -2^24, 1, 1, 1],
    x = ones: peel ((2^24 + 1) + 1) + 1 = 2^24 (each +1 is a tie, rounded to even 2^24);
    lanes over k = 4..7: l0 = 2^24 - 2^24 = 0, l1 = l2 = l3 = 1; (l0 + l2) + (l1 + l3) = 3,
    where the exact sum is 6.

    >>> row = np.float32([2**24, 1, 1, 1, -2**24, 1, 1, 1])
    >>> float(mkl_sgemm_tn(np.ones((1, 8), np.float32), np.tile(row, (4, 1)), np.zeros(4, np.float32))[0, 0])
    3.0
    """
    n, _ = x.shape
    m = w.shape[0]
    with ieee_float_ops():
        if _uses_fma_kernel(n, m):
            return _fma_kernel(x, w, bias)
        products = x[:, None, :] * w[None, :, :]  # (n, M, K): each product rounded to float32, no fma
        sums = _gemv_kernel(products) if n == 1 else _dot_kernel(products)
        return sums + bias  # C (the bias) added last, one float32 add


def _lanes(products: np.ndarray, lanes: int, seed: Optional[np.ndarray] = None) -> np.ndarray:
    """`lanes` float32 accumulators from +0 (lane 0 from `seed`): lane l adds products l,
    l + lanes, l + 2*lanes, ... in k order, one rounding per add."""
    acc = np.zeros(products.shape[:-1] + (lanes,), np.float32)
    if seed is not None:
        acc[..., 0] = seed
    for k0 in range(0, products.shape[-1], lanes):
        acc += products[..., k0 : k0 + lanes]
    return acc


def _halving(acc: np.ndarray) -> np.ndarray:
    """Horizontal sum by halving: lanes[:h] + lanes[h:] until one is left, e.g. 4 lanes
    give (l0 + l2) + (l1 + l3), 8 give ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))."""
    while acc.shape[-1] > 1:
        half = acc.shape[-1] // 2
        acc = acc[..., :half] + acc[..., half:]
    return acc[..., 0]


def _in_order(acc: np.ndarray, products: np.ndarray) -> np.ndarray:
    """acc + p0 + p1 + ... one float32 add at a time."""
    for k in range(products.shape[-1]):
        acc = acc + products[..., k]
    return acc


def _gemv_kernel(products: np.ndarray) -> np.ndarray:
    """Batch 1 (n == 1), products (1, M, K) already rounded (no fma), K % 8 == 0.

    The first 4 products are summed in order: ((p0 + p1) + p2) + p3 seeds lane 0 (MKL
    peels until the weight row is 16-byte aligned: 4 products for torch's 64-byte aligned
    storage with K % 4 == 0). Rows in full 4-row blocks (j < 4*floor(M/4)) then sum k >= 4
    in 4 lanes, reduced (l0 + l2) + (l1 + l3). The M mod 4 tail rows sum the next
    8*floor((K-4)/8) products in 8 lanes (tail rows 0 and 2) or 4 lanes (tail row 1),
    reduce by halving, and add the last (K-4) mod 8 products one by one.
    """
    m, k = products.shape[1:]
    seed = _in_order(np.zeros(products.shape[:-1], np.float32), products[..., :4])
    rest = products[..., 4:]
    main = 4 * (m // 4)
    out = np.empty(products.shape[:-1], np.float32)
    out[:, :main] = _halving(_lanes(rest[:, :main], 4, seed[:, :main]))
    body = 8 * ((k - 4) // 8)
    for j in range(main, m):
        lanes = 8 if (j - main) % 2 == 0 else 4
        partial = _halving(_lanes(rest[:, j, :body], lanes, seed[:, j]))
        out[:, j] = _in_order(partial, rest[:, j, body:])
    return out


def _dot_kernel(products: np.ndarray) -> np.ndarray:
    """Batch 2-3, or fewer than 12 output rows; products (n, M, K) already rounded (no fma),
    K % 8 == 0. Rows in full 4-row blocks: 4 lanes from k = 0, reduced (l0 + l2) + (l1 + l3);
    the M mod 4 tail rows: 8 lanes, reduced by halving."""
    m = products.shape[1]
    main = 4 * (m // 4)
    out = np.empty(products.shape[:-1], np.float32)
    out[:, :main] = _halving(_lanes(products[:, :main], 4))
    out[:, main:] = _halving(_lanes(products[:, main:], 8))
    return out


def fma_k_blocks(k: int) -> list[tuple[int, int]]:
    """The K ranges of MKL's fma kernel: one block up to 192; for 192 < K <= 384 two halves
    (K/2 rounded down to a multiple of 4) and the leftover, if any; above, blocks of 192.

    >>> fma_k_blocks(200), fma_k_blocks(400)
    ([(0, 100), (100, 200)], [(0, 192), (192, 384), (384, 400)])
    """
    if k <= FMA_K_BLOCK:
        return [(0, k)]
    if k <= 2 * FMA_K_BLOCK:
        half = (k // 2) // 4 * 4
        cuts = [0, half, 2 * half] + ([k] if 2 * half < k else [])
    else:
        cuts = list(range(0, k, FMA_K_BLOCK)) + [k]
    return list(zip(cuts[:-1], cuts[1:]))


def _fma_kernel(x: np.ndarray, w: np.ndarray, c: np.ndarray) -> np.ndarray:
    """n >= 4 and M >= 12: each K block is ONE fma chain from +0 in k order
    (acc = fma32(x_k, w_k, acc)), and C = ((c + B0) + B1) + ..., one float32 add per block."""
    out = np.broadcast_to(c, (x.shape[0], w.shape[0])).astype(np.float32)
    for k0, k1 in fma_k_blocks(x.shape[1]):
        acc = np.zeros_like(out)
        for k in range(k0, k1):
            acc = fma32(x[:, k : k + 1], w[None, :, k], acc)
        out = out + acc
    return out


# --- conv2d --------------------------------------------------------------------------


def uses_mkldnn(shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
                groups: int, num_threads: int) -> bool:
    """ATen `ConvParams::use_mkldnn` for a float32 CPU conv2d (not transposed):
    (strided or dilated or batch >= 16 or kernel not 1x1 or threads > 1) AND
    (groups > 1 or both kernel dims > 3 or batch > 1 or N*C*H*W > 20480)."""
    n, c, h, w = shape
    kh, kw = kernel
    first = stride != (1, 1) or dilation != (1, 1) or n >= 16 or (kh, kw) != (1, 1) or num_threads > 1
    second = groups > 1 or (kh > 3 and kw > 3) or n > 1 or n * c * h * w > 20480
    return first and second


def conv_order_known(weight_shape: tuple[int, ...], out_size: tuple[int, int], dilation: tuple[int, int],
                     groups: int, channels_last: bool, onednn: bool, num_threads: int = 1,
                     avx512: bool = True) -> bool:
    """Whether `conv2d` models this conv: groups 1, dilation 1, 3x3 kernel, 1 or 2 threads
    (the verified set); oneDNN on NCHW input with AVX-512 (`avx512`, the profile's) needs
    C <= 16 or C % 16 == 0 (AVX2: any C, 18 values probed in 1..256); slow_conv2d needs an SGEMM in
    `sgemm_order_known` (channels_last) or the fma kernel (NCHW: OH*OW >= 12, OC >= 4)."""
    if num_threads not in (1, 2):
        return False
    oc, c, kh, kw = weight_shape
    if groups != 1 or dilation != (1, 1) or (kh, kw) != (3, 3):
        return False
    positions, depth = out_size[0] * out_size[1], c * kh * kw
    if onednn:
        return channels_last or not avx512 or c <= ONEDNN_NCHW_BLOCK or c % ONEDNN_NCHW_BLOCK == 0
    if channels_last:
        return sgemm_order_known(positions, oc, depth, num_threads)
    return _uses_fma_kernel(oc, positions) and depth <= MAX_SGEMM_K and positions <= MAX_SGEMM_N


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
           channels_last: bool, onednn: bool, avx512: bool = True) -> np.ndarray:
    """`F.conv2d` (groups 1, dilation 1) of float32 NCHW values `x`, in the order of the
    backend ATen picked (`onednn`, see `uses_mkldnn`) for the input's memory format and, for
    oneDNN on NCHW input, the CPU's ISA (`avx512`, the profile's)."""
    with ieee_float_ops():
        if onednn:
            return _onednn_conv(x, weight, bias, stride, padding, channels_last, avx512)
        return _slow_conv2d(x, weight, bias, stride, padding, channels_last)


def _taps(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]) -> list:
    """Per kernel tap (kh, kw) in row-major order: the input values it reads for every output
    position (n, C, OH, OW) and the (OH, OW) mask of positions where it is inside the input."""
    (kh_size, kw_size), (sh, sw), (ph, pw) = kernel, stride, padding
    _, _, h, w = x.shape
    oh, ow = (h + 2 * ph - kh_size) // sh + 1, (w + 2 * pw - kw_size) // sw + 1
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    taps = []
    for kh in range(kh_size):
        rows = np.arange(oh) * sh + kh - ph
        for kw in range(kw_size):
            cols = np.arange(ow) * sw + kw - pw
            inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
            taps.append((kh, kw, padded[:, :, kh : kh + sh * oh : sh, kw : kw + sw * ow : sw], inside))
    return taps


def _fma_chain(taps: list, weight: np.ndarray, channels: range, acc: Optional[np.ndarray] = None) -> np.ndarray:
    """oneDNN's per-output sum: ONE fma chain from `acc` (default +0) over taps in (kh, kw, ic)
    order, acc = fma32(x, w, acc); taps in the zero-padding ring are skipped (not multiplied
    by 0: that could only turn an all-zero -0 sum into +0)."""
    if acc is None:
        first = taps[0][2]
        acc = np.zeros((first.shape[0], weight.shape[0]) + first.shape[2:], np.float32)
    for kh, kw, patch, inside in taps:
        for c in channels:
            step = fma32(patch[:, c : c + 1], weight[None, :, c, kh, kw, None, None], acc)
            acc = step if inside.all() else np.where(inside, step, acc)
    return acc


def _onednn_conv(x, weight, bias, stride, padding, channels_last, avx512=True) -> np.ndarray:
    """oneDNN brg_conv_fwd (channels_last; avx512_core or avx2) or jit:avx512_core on NCHW
    with C <= 16: one fma chain from +0 over every (kh, kw, ic), then + bias. jit:avx512_core
    on NCHW with C > 16 (nChw16c blocks): one chain per 16-channel block,
    ((B0 + bias) + B1) + B2 + ..., one float32 add each. jit:avx2 on NCHW: `_onednn_avx2_nchw`."""
    if not (channels_last or avx512):
        return _onednn_avx2_nchw(x, weight, bias, stride, padding)
    taps = _taps(x, weight.shape[2:], stride, padding)
    c = x.shape[1]
    block = c if channels_last else ONEDNN_NCHW_BLOCK
    out = _fma_chain(taps, weight, range(0, min(block, c))) + bias[None, :, None, None]
    for c0 in range(block, c, block):
        out = out + _fma_chain(taps, weight, range(c0, c0 + block))
    return out


def _onednn_avx2_nchw(x, weight, bias, stride, padding) -> np.ndarray:
    """oneDNN jit:avx2 on NCHW input (probed on an AVX2-only AMD EPYC, torch 2.13.0): ONE fma
    chain per output that STARTS at the bias (the bias is not added at the end) and runs the
    8-channel blocks (nChw8c) in turn, continuing the same chain, each over taps in (kh, kw, ic)
    order: (icb, kh, kw, ic-in-block). Random sweeps matched bit for bit (18 C in 1..256, OC 4..512,
    batch 1 and 2, strides 1 and 2, 1 and 2 threads); block 16, block 4, separate chains per
    block and a chain from +0 then + bias were ruled out.
    C < 8 reads the plain NCHW source: one block of C. C >= 8 is reordered to nChw8c with C
    padded to a multiple of 8 by zero channels, which the chain runs through (a no-op except
    that 0*0 + -0 is +0: an all -0 sum then ends +0, as torch's does).

    Hand-worked (C = 1, one output, bias 2^24, x = ones, w = [1 x8, -2^24]): the chain from
    the bias absorbs the eight 1s (2^24 + 1 is a tie, rounded to even 2^24), then 2^24 - 2^24
    = 0; a chain from +0 plus the bias would give (8 - 2^24) + 2^24 = 8.

    >>> w = np.float32([1] * 8 + [-2**24]).reshape(1, 1, 3, 3)
    >>> with ieee_float_ops():
    ...     out = _onednn_avx2_nchw(np.ones((1, 1, 3, 3), np.float32), w, np.float32([2**24]), (1, 1), (0, 0))
    >>> out.ravel().tolist()
    [0.0]
    """
    c = x.shape[1]
    block = ONEDNN_AVX2_NCHW_BLOCK
    if c > block and c % block:
        extra = block - c % block
        x = np.pad(x, ((0, 0), (0, extra), (0, 0), (0, 0)))
        weight = np.pad(weight, ((0, 0), (0, extra), (0, 0), (0, 0)))
        c += extra
    taps = _taps(x, weight.shape[2:], stride, padding)
    shape = (x.shape[0], weight.shape[0]) + taps[0][3].shape
    acc = np.broadcast_to(bias[None, :, None, None], shape).astype(np.float32)
    for c0 in range(0, c, block):
        acc = _fma_chain(taps, weight, range(c0, min(c0 + block, c)), acc)
    return acc


def _slow_conv2d(x, weight, bias, stride, padding, channels_last) -> np.ndarray:
    """ATen slow_conv2d: im2col (padding ring reads 0) then MKL SGEMM per batch item, C = bias.
    channels_last: columns ordered (kh, kw, ic), SGEMM('T','N', OC, OH*OW, K) = `mkl_sgemm_tn`
    with the positions as its batch. NCHW: columns ordered (ic, kh, kw),
    SGEMM('N','N', OH*OW, OC, K): the fma kernel with OC in the batch role."""
    taps = _taps(x, weight.shape[2:], stride, padding)
    n, c = x.shape[:2]
    oc, _, kh, kw = weight.shape
    oh, ow = taps[0][3].shape
    # cols: (n, C, T, OH, OW)
    cols = np.stack([np.where(inside, patch, np.float32(0)) for _, _, patch, inside in taps], axis=2)
    if channels_last:
        cols = cols.transpose(0, 3, 4, 2, 1).reshape(n, oh * ow, kh * kw * c)
        w = weight.transpose(0, 2, 3, 1).reshape(oc, kh * kw * c)
        out = np.stack([mkl_sgemm_tn(cols[i], w, bias) for i in range(n)])  # (n, OH*OW, OC)
        return out.reshape(n, oh, ow, oc).transpose(0, 3, 1, 2)
    cols = cols.reshape(n, c * kh * kw, oh * ow)
    w = weight.reshape(oc, c * kh * kw)
    out = np.stack([_fma_kernel(w, cols[i].T, bias[:, None]) for i in range(n)])  # (n, OC, OH*OW)
    return out.reshape(n, oc, oh, ow)

