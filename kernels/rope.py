"""Rotary position embedding, half-rotation layout (Qwen, Llama), driven by per-token positions."""
import torch


def rope_reference(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor,
                   cos_sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q [N, Hq, D], k [N, Hk, D], positions [N] int, cos_sin [max_pos, D] fp32 whose first
    D/2 columns are cos and last D/2 are sin of position * inv_freq. Returns rotated (q, k)
    in their input dtypes; the rotation itself is computed in fp32."""
    half = q.shape[-1] // 2
    cs = cos_sin[positions.long()]
    cos, sin = cs[:, None, :half], cs[:, None, half:]

    def rotate(x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.float()[..., :half], x.float()[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)

    return rotate(q), rotate(k)
