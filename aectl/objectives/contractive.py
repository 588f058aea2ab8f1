"""The contractive penalty's term: ‖J_f(x)‖²_F, the squared Frobenius norm of the Jacobian of
the encoder's code h = f(x) with respect to its input, per example (Rifai et al. 2011, eq. 2).

Exact, two ways:
  one-layer sigmoid encoder h = sigmoid(Wx + b): the closed form of Rifai et al. (2011, eq. 3),
      ‖J_f(x)‖²_F = Σ_j (h_j(1 − h_j))² Σ_i W_ji², one elementwise pass over h and W;
  any other encoder: the K rows of J (K = code size) as K vector-Jacobian products batched in
      one vmapped backward pass (autograd's is_grads_batched), J of shape (K, N, D). Costs K
      backward passes of the encoder and K·N·D floats of memory, and with create_graph the
      training step differentiates through them (double backward): about K+1 times the encoder's
      cost, so keep the code small or the encoder shallow.
Examples must be independent (no batch statistics in the encoder): row k of the batched VJP of
Σ_n h_nk is then the Jacobian row of each example.
"""

import torch
from torch import nn


def one_layer_sigmoid(model: nn.Module) -> nn.Linear | None:
    """The Linear layer W of an encoder h = sigmoid(W·flatten(x) + b), else None: the closed
    form's only case. Its h(1 − h) is the sigmoid's derivative, so any other code activation
    (identity, tanh, relu, ...) or layer before the code takes the batched-VJP path. Exact
    types: a subclass may compute something else."""
    model = getattr(model, "module", model)  # a DistributedDataParallel wrapper's module
    encoder, code = getattr(model, "encoder", None), getattr(model, "code", None)
    if encoder is None or code is None or any(not isinstance(m, nn.Flatten) for m in encoder.body):
        return None
    if len(code) == 2 and type(code[0]) is nn.Linear and type(code[1]) is nn.Sigmoid:
        return code[0]
    return None


def sigmoid_layer_sq_norm(h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Σ_j (h_j(1 − h_j))² Σ_i W_ji² per example (Rifai et al. 2011, eq. 3); h (N, K), W (K, D)."""
    return (h * (1 - h)).square() @ weight.square().sum(1)


def batched_vjp_sq_norm(h: torch.Tensor, x: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """Σ_k ‖∂h_k/∂x‖² per example from the K vector-Jacobian products e_kᵀJ, batched; h (N, K)
    computed from x (N, ...) which requires grad."""
    n, k = h.shape
    basis = torch.eye(k, device=h.device, dtype=h.dtype).unsqueeze(1).expand(k, n, k)
    (rows,) = torch.autograd.grad(h, x, grad_outputs=basis, is_grads_batched=True, create_graph=create_graph)
    return rows.square().flatten(2).sum(2).sum(0)


def jacobian_sq_norm(model: nn.Module, x: torch.Tensor, h: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """‖J_f(x)‖²_F per example, shape (N,), for the code h = f(x) the model computed from x (which
    must require grad unless the closed form applies)."""
    layer = one_layer_sigmoid(model)
    if layer is not None:
        return sigmoid_layer_sq_norm(h, layer.weight)
    return batched_vjp_sq_norm(h, x, create_graph)
