"""MTLLoRALinear against the paper's equation, computed naively per example."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.mtl_lora import MTLLoRALinear

IN, OUT, RANK, TASKS, NUM_UP = 12, 10, 4, 3, 3


def make_layer(lambda_form: str = "full", seed: int = 0, **kwargs) -> MTLLoRALinear:
    torch.manual_seed(seed)
    layer = MTLLoRALinear(
        nn.Linear(IN, OUT), num_tasks=TASKS, rank=RANK, num_up=NUM_UP, temperature=0.5, alpha=8.0,
        lambda_form=lambda_form, **kwargs,
    )
    # Move every adapter parameter off its (identity / zero) initialisation so the test sees the math.
    with torch.no_grad():
        for p in (layer.lora_lambda, layer.lora_B, layer.lora_w):
            p.add_(torch.randn_like(p))
    return layer


def reference(layer: MTLLoRALinear, x: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
    """h = W x + b + (α/r) Σ_i softmax(w_t/τ)_i B^i Λ_t A x, one example at a time."""
    outputs = []
    for example, task in zip(x, task_ids.tolist(), strict=True):
        lam = layer.lora_lambda[task] if layer.lambda_form == "full" else torch.diag(layer.lora_lambda[task])
        p = torch.softmax(layer.lora_w[task] / layer.temperature, dim=0)
        delta = sum(p[i] * layer.lora_B[i] @ lam @ layer.lora_A for i in range(layer.num_up))
        outputs.append(layer.base(example) + (layer.scaling * example @ delta.T))
    return torch.stack(outputs)


@pytest.mark.parametrize("lambda_form", ["full", "diagonal"])
@pytest.mark.parametrize("shape", [(5, IN), (5, 7, IN), (5, 2, 3, IN)])
def test_forward_matches_equation(lambda_form: str, shape: tuple[int, ...]) -> None:
    layer = make_layer(lambda_form)
    x = torch.randn(*shape)
    task_ids = torch.tensor([0, 2, 1, 2, 0])
    torch.testing.assert_close(layer(x, task_ids=task_ids), reference(layer, x, task_ids))


def test_parameter_shapes_follow_the_api() -> None:
    full, diagonal = make_layer("full"), make_layer("diagonal")
    assert full.lora_A.shape == (RANK, IN)
    assert full.lora_lambda.shape == (TASKS, RANK, RANK)
    assert diagonal.lora_lambda.shape == (TASKS, RANK)
    assert full.lora_B.shape == (NUM_UP, OUT, RANK)
    assert full.lora_w.shape == (TASKS, NUM_UP)
    assert full.scaling == 8.0 / RANK


def test_fresh_layer_changes_nothing_and_initialises_as_specified() -> None:
    base = nn.Linear(IN, OUT)
    layer = MTLLoRALinear(base, num_tasks=TASKS, rank=RANK)
    x = torch.randn(4, IN)
    torch.testing.assert_close(layer(x, task_ids=torch.tensor([0, 1, 2, 0])), base(x), rtol=0, atol=0)
    assert torch.equal(layer.lora_lambda, torch.eye(RANK).expand(TASKS, RANK, RANK))
    assert torch.count_nonzero(layer.lora_B) == 0
    assert torch.count_nonzero(layer.lora_A) == layer.lora_A.numel()
    bound = 1 / IN**0.5  # kaiming-uniform(a=√5) on fan_in=IN
    assert layer.lora_A.abs().max() <= bound
    diagonal = MTLLoRALinear(nn.Linear(IN, OUT), num_tasks=TASKS, rank=RANK, lambda_form="diagonal")
    assert torch.equal(diagonal.lora_lambda, torch.ones(TASKS, RANK))
    assert torch.count_nonzero(layer.lora_w) == layer.lora_w.numel()  # kaiming: a random start


@pytest.mark.parametrize("temperature", [0.1, 1.0])
def test_uniform_mixing_init_mixes_every_up_projection_equally(temperature: float) -> None:
    layer = MTLLoRALinear(nn.Linear(IN, OUT), num_tasks=TASKS, rank=RANK, num_up=NUM_UP,
                          temperature=temperature, mixing_init="uniform")
    torch.testing.assert_close(layer.mixing_weights(), torch.full((TASKS, NUM_UP), 1 / NUM_UP))
    x = torch.randn(4, IN)
    torch.testing.assert_close(layer(x, task_ids=torch.tensor([0, 1, 2, 0])), layer.base(x), rtol=0, atol=0)


def fit(layer: MTLLoRALinear, steps: int = 30) -> MTLLoRALinear:
    """A few Adam steps on a task-dependent regression target."""
    torch.manual_seed(1)
    x, task_ids = torch.randn(64, IN), torch.randint(0, TASKS, (64,))
    target = torch.randn(TASKS, OUT)[task_ids]
    optimizer = torch.optim.Adam([p for p in layer.parameters() if p.requires_grad], lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(layer(x, task_ids=task_ids), target).backward()
        optimizer.step()
    return layer


def test_uniform_mixing_with_zero_up_projections_never_tells_them_apart() -> None:
    # Equal mixing and B^i = 0 give every B^i the same gradient, so they stay equal and w_t learns
    # nothing: MTL-LoRA degenerates to one up-projection. A random w_t breaks the symmetry.
    torch.manual_seed(0)
    uniform = fit(MTLLoRALinear(nn.Linear(IN, OUT), num_tasks=TASKS, rank=RANK, num_up=NUM_UP, mixing_init="uniform"))
    assert torch.count_nonzero(uniform.lora_B) > 0
    for i in range(1, NUM_UP):
        torch.testing.assert_close(uniform.lora_B[i], uniform.lora_B[0])
    torch.testing.assert_close(uniform.mixing_weights(), torch.full((TASKS, NUM_UP), 1 / NUM_UP))
    torch.manual_seed(0)
    kaiming = fit(MTLLoRALinear(nn.Linear(IN, OUT), num_tasks=TASKS, rank=RANK, num_up=NUM_UP))
    assert (kaiming.lora_B[1] - kaiming.lora_B[0]).abs().max() > 1e-3


def test_mixed_batch_equals_each_task_alone() -> None:
    layer = make_layer()
    x = torch.randn(6, 5, IN)
    task_ids = torch.tensor([2, 0, 1, 1, 0, 2])
    mixed = layer(x, task_ids=task_ids)
    for task in range(TASKS):
        rows = (task_ids == task).nonzero().squeeze(1)
        alone = layer(x[rows], task_ids=torch.full((len(rows),), task))
        torch.testing.assert_close(mixed[rows], alone)


@pytest.mark.parametrize("lambda_form", ["full", "diagonal"])
def test_merge_matches_unmerged_and_unmerge_restores(lambda_form: str) -> None:
    layer = make_layer(lambda_form)
    x = torch.randn(4, 3, IN)
    original = layer.base.weight.clone()
    for task in range(TASKS):
        ids = torch.full((4,), task)
        expected = layer(x, task_ids=ids)
        layer.merge(task)
        assert layer.merged_task == task
        torch.testing.assert_close(layer(x), expected)  # merged: no task ids needed
        layer.unmerge()
        assert torch.equal(layer.base.weight, original)
    zeros = torch.zeros(4, dtype=torch.long)
    torch.testing.assert_close(layer(x, task_ids=zeros), reference(layer, x, zeros))


def test_gradients_reach_only_adapter_parameters() -> None:
    layer = make_layer(dropout=0.1)
    layer.train()
    x = torch.randn(4, 3, IN, requires_grad=True)
    layer(x, task_ids=torch.tensor([0, 1, 1, 2])).square().sum().backward()
    assert layer.base.weight.grad is None and layer.base.bias.grad is None
    for name in ("lora_A", "lora_lambda", "lora_B", "lora_w"):
        grad = getattr(layer, name).grad
        assert grad is not None and torch.count_nonzero(grad) > 0, name
    assert x.grad is not None
    assert {n for n, p in layer.named_parameters() if p.requires_grad} == {"lora_A", "lora_lambda", "lora_B", "lora_w"}


def test_gradient_matches_reference() -> None:
    layer = make_layer()
    x, ids = torch.randn(5, 2, IN), torch.tensor([0, 1, 2, 1, 0])
    layer(x, task_ids=ids).sum().backward()
    fused = {n: p.grad.clone() for n, p in layer.named_parameters() if p.requires_grad}
    layer.zero_grad()
    reference(layer, x, ids).sum().backward()
    for name, grad in fused.items():
        torch.testing.assert_close(grad, getattr(layer, name).grad, msg=name)


def test_untouched_tasks_get_no_lambda_gradient() -> None:
    layer = make_layer()
    layer(torch.randn(3, IN), task_ids=torch.tensor([0, 0, 2])).sum().backward()
    assert torch.count_nonzero(layer.lora_lambda.grad[1]) == 0
    assert torch.count_nonzero(layer.lora_lambda.grad[0]) > 0


def test_softmax_is_stable_at_small_temperature_in_bf16() -> None:
    layer = MTLLoRALinear(nn.Linear(IN, OUT).to(torch.bfloat16), num_tasks=TASKS, rank=RANK, temperature=1e-4)
    with torch.no_grad():
        layer.lora_w.mul_(1e3)
    p = layer.mixing_weights()
    assert p.dtype == torch.float32 and torch.isfinite(p).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(TASKS))
    out = layer(torch.randn(2, IN, dtype=torch.bfloat16), task_ids=torch.tensor([0, 1]))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "task_ids, message",
    [(None, "needs task_ids"), (torch.tensor([0, 1]), r"shape \[batch\]"), (torch.tensor([[0], [1], [2]]), "shape")],
)
def test_bad_task_ids_are_rejected(task_ids, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_layer()(torch.randn(3, IN), task_ids=task_ids)


def test_bad_construction_is_rejected() -> None:
    with pytest.raises(ValueError, match="lambda_form"):
        MTLLoRALinear(nn.Linear(IN, OUT), num_tasks=2, rank=2, lambda_form="block")
    with pytest.raises(ValueError, match="mixing_init"):
        MTLLoRALinear(nn.Linear(IN, OUT), num_tasks=2, rank=2, mixing_init="normal")
    with pytest.raises(TypeError, match="nn.Linear"):
        MTLLoRALinear(nn.Conv1d(2, 2, 1), num_tasks=2, rank=2)
    with pytest.raises(ValueError, match="task must be in"):
        make_layer().merge(TASKS)
