"""Cross-entropy of a linear head (lm_head) without keeping [tokens, vocab] logits alive."""
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels.triton_support import INTERPRET, LOG2E

_LOG2E = tl.constexpr(LOG2E)


def linear_cross_entropy_reference(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                                   ignore_index: int = -100, reduction: str = "sum") -> torch.Tensor:
    """hidden [N, d], weight [V, d], labels [N] -> scalar fp32 loss ("sum" or "mean" over the
    tokens whose label is not ignore_index)."""
    logits = (hidden @ weight.t()).float()
    return F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction=reduction)


# ----------------------------------------------------------------------------- Triton
#
# The forward walks the tokens in chunks: logits = hidden_chunk @ weight.T (one cuBLAS matmul in
# the input dtype, as the reference), then one Triton program per row computes the row's
# log-sum-exp and loss and overwrites its logits with d(loss)/d(logits); two more matmuls turn
# that into the chunk's grad_hidden rows and its share of grad_weight. Only one chunk of
# logits ever exists. The backward just scales the stored gradients by grad_output.


@triton.jit
def _cross_entropy_rows_kernel(LOGITS, LABELS, LOSS, N_VALID, stride_row, V, ignore_index,
                               MEAN: tl.constexpr, WRITE_GRAD: tl.constexpr,
                               BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base = LOGITS + row * stride_row
    label = tl.load(LABELS + row).to(tl.int64)
    valid = label != ignore_index
    # pass 1: running max and sum of exp2, in log2 units
    m = float("-inf")
    l = 0.0
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        x = tl.load(base + cols, mask=cols < V, other=float("-inf")).to(tl.float32) * _LOG2E
        m_new = tl.maximum(m, tl.max(x, axis=0))
        l = l * tl.exp2(m - m_new) + tl.sum(tl.exp2(x - m_new), axis=0)
        m = m_new
    lse2 = m + tl.log2(l)
    target = tl.load(base + label, mask=valid, other=0.0).to(tl.float32)
    tl.store(LOSS + row, tl.where(valid, lse2 / _LOG2E - target, 0.0))
    if WRITE_GRAD:
        # pass 2: softmax - one_hot(label), times 1/n_valid for "mean"; ignored rows get 0
        scale = 1.0
        if MEAN:
            scale = 1.0 / tl.maximum(tl.load(N_VALID).to(tl.float32), 1.0)
        scale = tl.where(valid, scale, 0.0)
        for v0 in range(0, V, BLOCK_V):
            cols = v0 + tl.arange(0, BLOCK_V)
            x = tl.load(base + cols, mask=cols < V, other=0.0).to(tl.float32) * _LOG2E
            grad = tl.exp2(x - lse2) - tl.where(cols == label, 1.0, 0.0)
            tl.store(base + cols, (grad * scale).to(LOGITS.dtype.element_ty), mask=cols < V)


def _chunk_tokens(vocab: int, dtype: torch.dtype) -> int:
    """About 1 GiB of logits per chunk (4k tokens of a 150k bf16 vocab would be 1.2 GiB)."""
    if INTERPRET:
        return 16
    itemsize = torch.finfo(dtype).bits // 8
    return max(256, min(8192, (1 << 30) // (vocab * itemsize)))


def _rows_loss_and_grad(logits, labels, n_valid, ignore_index, mean, write_grad):
    """Per-row losses [C] fp32; with write_grad, logits [C, V] become d(loss)/d(logits)."""
    rows, vocab = logits.shape
    loss = torch.empty(rows, dtype=torch.float32, device=logits.device)
    block = min(triton.next_power_of_2(vocab), 64 if INTERPRET else 8192)
    _cross_entropy_rows_kernel[(rows,)](logits, labels, loss, n_valid, logits.stride(0), vocab,
                                        ignore_index, MEAN=mean, WRITE_GRAD=write_grad,
                                        BLOCK_V=block, num_warps=16 if block >= 8192 else 4)
    return loss


def _chunked_forward(hidden, weight, labels, ignore_index, reduction, need_hidden_grad,
                     need_weight_grad, chunk_tokens):
    n_tokens = hidden.shape[0]
    mean = reduction == "mean"
    write_grad = need_hidden_grad or need_weight_grad
    n_valid = (labels != ignore_index).sum()      # stays on the device: no sync
    losses = torch.empty(n_tokens, dtype=torch.float32, device=hidden.device)
    grad_hidden = torch.empty_like(hidden) if need_hidden_grad else None
    grad_weight = None
    chunk = chunk_tokens or _chunk_tokens(weight.shape[0], hidden.dtype)
    for start in range(0, n_tokens, chunk):
        h = hidden[start:start + chunk]
        logits = h @ weight.t()
        losses[start:start + chunk] = _rows_loss_and_grad(
            logits, labels[start:start + chunk], n_valid, ignore_index, mean, write_grad)
        if need_hidden_grad:
            torch.mm(logits, weight, out=grad_hidden[start:start + chunk])
        if need_weight_grad:
            part = logits.t() @ h      # [V, d], fp32 accumulation inside the matmul
            if grad_weight is None:
                grad_weight = part
            else:                      # sum the chunks' shares in fp32
                if grad_weight.dtype != torch.float32:
                    grad_weight = grad_weight.float()
                grad_weight += part
    loss = losses.sum()
    if mean:
        loss = loss / n_valid
    if need_weight_grad:
        grad_weight = (torch.zeros_like(weight) if grad_weight is None
                       else grad_weight.to(weight.dtype))
    return loss, grad_hidden, grad_weight


class _LinearCrossEntropyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, ignore_index, reduction, chunk_tokens):
        loss, grad_hidden, grad_weight = _chunked_forward(
            hidden, weight, labels, ignore_index, reduction, ctx.needs_input_grad[0],
            ctx.needs_input_grad[1], chunk_tokens)
        ctx.save_for_backward(grad_hidden, grad_weight)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_output.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = grad_weight * grad_output.to(grad_weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         ignore_index: int = -100, reduction: str = "sum", *,
                         chunk_tokens: int | None = None) -> torch.Tensor:
    """Cross-entropy of hidden @ weight.T without materializing [N, V] logits.

    hidden [N, d], weight [V, d] (same float dtype), labels [N] int -> scalar fp32 loss, "sum"
    or "mean" over tokens whose label is not ignore_index. Logits are computed in the input
    dtype (as the reference), softmax and loss in fp32. Gradients for hidden and weight are
    computed during the forward, chunk by chunk (chunk_tokens rows at a time; default ~1 GiB
    of logits), and only when autograd will ask for them.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"linear_cross_entropy: reduction {reduction!r} is not 'sum' or 'mean'")
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"linear_cross_entropy: hidden {tuple(hidden.shape)} and weight "
                         f"{tuple(weight.shape)} must be [N, d] and [V, d]")
    if labels.shape != (hidden.shape[0],):
        raise ValueError(f"linear_cross_entropy: labels {tuple(labels.shape)} != "
                         f"({hidden.shape[0]},)")
    if hidden.dtype != weight.dtype:
        raise ValueError(f"linear_cross_entropy: hidden is {hidden.dtype}, weight {weight.dtype}")
    hidden = hidden.contiguous()
    if not torch.is_grad_enabled() or not (hidden.requires_grad or weight.requires_grad):
        return _chunked_forward(hidden, weight, labels, ignore_index, reduction, False, False,
                                chunk_tokens)[0]
    return _LinearCrossEntropyFunction.apply(hidden, weight, labels, ignore_index, reduction,
                                             chunk_tokens)
