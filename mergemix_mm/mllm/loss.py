"""Response log-probabilities and the mixed SimPO loss of MergeMix.

The mixed SimPO loss (MergeMix, Eq. 11; ``ALGORITHM.md`` §6.4, B4-B6) of a
preference pair whose winner is the clean image ``x`` and whose loser is the
MergeMix-mixed image ``x_hat``, both with the *same* response ``y``, is::

    -log sigmoid(beta / |y| * log pi(y | x) - beta / |y| * log pi(y | x_hat)
                 - gamma),    gamma = 1 - lambda

Log-probabilities are taken with the model's own label alignment: ``labels``
are aligned with ``input_ids`` over the *expanded* sequence (visual tokens
included, set to ``-100``) and the logit at position ``t`` scores the label at
position ``t + 1`` -- the next-token shift of Hugging Face's
``ForCausalLMLoss``. No constant visual-token offset is ever used (the
official LLaVA code slices at ``576 - merge_num`` and is off by one token).
"""
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'IGNORE_INDEX', 'sequence_logps', 'response_logps', 'mixed_simpo_loss',
    'sft_loss_from_logps'
]

#: Label value of tokens that are not scored (prompt, image, padding).
IGNORE_INDEX = -100


def _shifted_targets(labels: Tensor,
                     ignore_index: int) -> Tuple[Tensor, Tensor]:
    """Targets ``labels[:, 1:]`` padded back to length ``L`` and their mask.

    Position ``t`` of the result is the token that the logit at position
    ``t`` predicts (the last position predicts nothing).
    """
    if labels.dim() != 2:
        raise ValueError(
            f'labels must have shape [B, L], got {tuple(labels.shape)}')
    targets = F.pad(labels[:, 1:], (0, 1), value=ignore_index)
    return targets, targets != ignore_index


def sequence_logps(logits: Tensor,
                   labels: Tensor,
                   ignore_index: int = IGNORE_INDEX) -> Tuple[Tensor, Tensor]:
    """Summed log-probability of the labelled tokens of every sequence.

    Uses the standard causal shift: the logit at position ``t`` scores
    ``labels[:, t + 1]``; labels equal to ``ignore_index`` are skipped. The
    token-mean of ``-logp`` over the batch equals the Hugging Face causal-LM
    loss for the same ``labels``.

    Args:
        logits (Tensor): ``[B, L, V]`` logits over the expanded sequence.
        labels (Tensor): ``LongTensor[B, L]`` aligned with the logits' input.
        ignore_index (int): Label value that is not scored.
            Defaults to -100.

    Returns:
        tuple[Tensor, Tensor]: ``logp_sum`` of shape ``[B]`` (float32) and
        ``num_tokens`` of shape ``[B]`` (long).
    """
    if logits.dim() != 3 or logits.shape[:2] != labels.shape:
        raise ValueError(f'logits {tuple(logits.shape)} and labels '
                         f'{tuple(labels.shape)} are not aligned ([B, L, V] '
                         'and [B, L])')
    targets, mask = _shifted_targets(labels, ignore_index)
    safe = targets.masked_fill(~mask, 0)
    logits = logits.float()
    token_logp = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1) - \
        torch.logsumexp(logits, dim=-1)
    token_logp = token_logp.masked_fill(~mask, 0.)
    return token_logp.sum(-1), mask.sum(-1)


def response_logps(hidden_states: Tensor,
                   labels: Tensor,
                   lm_head: Callable[[Tensor], Tensor],
                   ignore_index: int = IGNORE_INDEX) -> Tuple[Tensor, Tensor]:
    """Like :func:`sequence_logps`, but applies ``lm_head`` only where needed.

    The language-model head is evaluated only at the positions whose next
    token is labelled, so no ``[B, L, V]`` logits tensor is materialised for
    the (long) prompt and image part of the sequence. The result is identical
    to ``sequence_logps(lm_head(hidden_states), labels)``.

    Args:
        hidden_states (Tensor): ``[B, L, D]`` final hidden states of the LLM.
        labels (Tensor): ``LongTensor[B, L]``.
        lm_head (Callable): Maps ``[..., D]`` to ``[..., V]``.
        ignore_index (int): Label value that is not scored.
            Defaults to -100.

    Returns:
        tuple[Tensor, Tensor]: ``logp_sum`` ``[B]`` (float32) and
        ``num_tokens`` ``[B]`` (long).
    """
    if hidden_states.dim() != 3 or hidden_states.shape[:2] != labels.shape:
        raise ValueError(f'hidden_states {tuple(hidden_states.shape)} and '
                         f'labels {tuple(labels.shape)} are not aligned')
    targets, mask = _shifted_targets(labels, ignore_index)
    rows, cols = mask.nonzero(as_tuple=True)
    logits = lm_head(hidden_states[rows, cols]).float()  # [M, V]
    tgt = targets[rows, cols]
    token_logp = logits.gather(-1, tgt.unsqueeze(-1)).squeeze(-1) - \
        torch.logsumexp(logits, dim=-1)
    logp_sum = torch.zeros(
        labels.shape[0], dtype=token_logp.dtype, device=token_logp.device)
    logp_sum = logp_sum.index_add(0, rows, token_logp)
    return logp_sum, mask.sum(-1)


def sft_loss_from_logps(logp_sum: Tensor, num_tokens: Tensor) -> Tensor:
    """Token-mean negative log-likelihood over a batch (the HF SFT loss).

    Args:
        logp_sum (Tensor): ``[B]`` summed response log-probabilities.
        num_tokens (Tensor): ``[B]`` response token counts.

    Returns:
        Tensor: Scalar ``-sum(logp_sum) / sum(num_tokens)``; ``0`` (with a
        graph) when the batch has no labelled token.
    """
    total = num_tokens.sum()
    if total == 0:
        return logp_sum.sum() * 0.
    return -logp_sum.sum() / total


def mixed_simpo_loss(logp_winner: Tensor,
                     logp_loser: Tensor,
                     num_tokens: Tensor,
                     lam: Union[Tensor, float],
                     beta: float = 1.0,
                     reduction: str = 'mean',
                     length: Optional[Tensor] = None) -> Tensor:
    """Mixed SimPO loss with margin ``gamma = 1 - lambda`` (MergeMix Eq. 11).

    ``-log sigmoid(beta * logp_w / |y| - beta * logp_l / |y| - (1 - lam))``.

    Args:
        logp_winner (Tensor): ``[P]`` summed log-probability of the response
            given the clean image.
        logp_loser (Tensor): ``[P]`` the same given the mixed image.
        num_tokens (Tensor): ``[P]`` response lengths ``|y|`` (the same for
            winner and loser, which share the response).
        lam (Tensor | float): Mixing ratio (fraction of the clean image kept
            in the loser), scalar or ``[P]``.
        beta (float): Reward scale; must be > 0. Defaults to 1.0.
        reduction (str): ``'mean'``, ``'sum'`` or ``'none'``.
            Defaults to ``'mean'``.
        length (Tensor, optional): Override of the length normaliser (e.g. the
            padded length, for ``compat='llava'``). Defaults to None, i.e.
            ``num_tokens``.

    Returns:
        Tensor: The reduced loss (``[P]`` for ``'none'``). An empty input
        gives ``0`` for ``'mean'``/``'sum'``.

    Raises:
        ValueError: If ``beta <= 0``, a response is empty, ``lam`` lies
            outside ``[0, 1]`` or ``reduction`` is unknown.
    """
    if not beta > 0:
        raise ValueError(f'beta={beta!r} must be > 0 for the SimPO loss.')
    if reduction not in ('mean', 'sum', 'none'):
        raise ValueError(f"reduction={reduction!r} must be 'mean', 'sum' or "
                         "'none'.")
    norm = num_tokens if length is None else length
    if (norm <= 0).any():
        raise ValueError('mixed_simpo_loss: every pair needs at least one '
                         'response token (|y| > 0), got lengths '
                         f'{norm.tolist()}.')
    norm = norm.to(logp_winner.dtype)
    lam = torch.as_tensor(lam, dtype=logp_winner.dtype,
                          device=logp_winner.device)
    if not ((lam >= 0) & (lam <= 1)).all():
        raise ValueError('mixed_simpo_loss: lam must lie in [0, 1] (the '
                         'fraction of the clean image kept in the loser), '
                         f'got {lam.tolist()}.')
    gamma = 1. - lam
    logits = beta * logp_winner / norm - beta * logp_loser / norm - gamma
    losses = -F.logsigmoid(logits)
    if reduction == 'none':
        return losses
    if losses.numel() == 0:
        return logp_winner.sum() * 0. + logp_loser.sum() * 0.
    return losses.mean() if reduction == 'mean' else losses.sum()
