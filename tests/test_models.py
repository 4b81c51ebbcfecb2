"""The chapter's building blocks, checked against answers worked out by hand."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from collabkit import (
    DotProduct,
    Embedding,
    EmbeddingDotBias,
    EmbeddingNN,
    Module,
    RatingClassifier,
    emb_sz_rule,
    get_emb_sz,
    one_hot,
    pca,
    sigmoid_range,
)


def test_one_hot_times_factors_is_the_lookup() -> None:
    torch.manual_seed(0)
    factors = torch.randn(7, 4)
    emb = nn.Embedding.from_pretrained(factors)
    for i in range(7):
        assert torch.allclose(one_hot(i, 7) @ factors, factors[i])
    idx = torch.tensor([3, 0, 6])
    assert torch.allclose(one_hot(idx, 7) @ factors, emb(idx))


def test_worksheet_gradient_step() -> None:
    # loss (u*v - 1)^2 at u=1, v=0: dloss/dv = 2(uv-1)u = -2; a step of 0.1 gives v=0.2, loss 0.64
    u = torch.tensor(1.0)
    v = torch.tensor(0.0, requires_grad=True)
    loss = (u * v - 1) ** 2
    loss.backward()
    assert v.grad is not None and v.grad.item() == -2.0
    with torch.no_grad():
        v -= 0.1 * v.grad
    assert abs(v.item() - 0.2) < 1e-7
    assert abs(((u * v - 1) ** 2).item() - 0.64) < 1e-6


@given(st.floats(-1e4, 1e4, allow_nan=False), st.floats(-10, 10), st.floats(0.01, 10))
def test_sigmoid_range_stays_inside(x: float, low: float, width: float) -> None:
    y = sigmoid_range(torch.tensor([x], dtype=torch.float64), low, low + width).item()
    assert low <= y <= low + width


def test_sigmoid_range_midpoint_and_monotone() -> None:
    assert sigmoid_range(torch.tensor(0.0), 0, 5.5).item() == 2.75
    xs = torch.linspace(-5, 5, 11)
    ys = sigmoid_range(xs, 0, 5.5)
    assert (ys[1:] > ys[:-1]).all()


def test_module_needs_no_super_init() -> None:
    class Tiny(Module):
        def __init__(self, n: int) -> None:
            self.lin = nn.Linear(n, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x)

    m = Tiny(3)
    assert len(list(m.parameters())) == 2
    assert m(torch.zeros(2, 3)).shape == (2, 1)


def test_embedding_init_is_truncated_normal_small() -> None:
    torch.manual_seed(0)
    w = Embedding(2000, 50).weight
    assert w.abs().max() <= 0.02 + 1e-7
    assert 0.007 < w.std().item() < 0.011


def test_dot_bias_forward_by_hand() -> None:
    # 2 users, 2 items, fixed weights: rating = u.i + bu + bi, then sigmoid range
    m = EmbeddingDotBias(2, n_users=2, n_items=2, y_range=None)
    with torch.no_grad():
        m.u_weight.weight.copy_(torch.tensor([[1.0, 2.0], [0.5, -1.0]]))
        m.i_weight.weight.copy_(torch.tensor([[3.0, 0.0], [1.0, 1.0]]))
        m.u_bias.weight.copy_(torch.tensor([[0.1], [0.2]]))
        m.i_bias.weight.copy_(torch.tensor([[-0.5], [0.3]]))
    x = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    expected = torch.tensor([3 + 0.1 - 0.5, 3 + 0.1 + 0.3, 1.5 + 0.2 - 0.5, -0.5 + 0.2 + 0.3])
    assert torch.allclose(m(x), expected)
    m.y_range = (0.0, 5.5)
    assert torch.allclose(m(x), sigmoid_range(expected, 0, 5.5))


def test_dot_product_forward_by_hand() -> None:
    m = DotProduct(2, 2, n_factors=2)
    with torch.no_grad():
        m.user_factors.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
        m.item_factors.weight.copy_(torch.tensor([[3.0, 1.0], [1.0, -1.0]]))
    assert torch.allclose(m(torch.tensor([[0, 0], [1, 1]])), torch.tensor([5.0, -1.0]))


def test_emb_sz_rule_matches_fastai_for_ml100k() -> None:
    # the chapter's embedding sizes for 944 users and 1665 titles
    assert [emb_sz_rule(944), emb_sz_rule(1665)] == [74, 102]
    assert emb_sz_rule(10**9) == 600
    assert get_emb_sz({"user": range(944), "title": range(1665)}) == [(944, 74), (1665, 102)]


def test_embedding_nn_shapes_and_range() -> None:
    m = EmbeddingNN([(10, 4), (20, 6)], layers=[8, 5], y_range=(0, 5.5))
    out = m(torch.tensor([[1, 2], [3, 4], [9, 19]]))
    assert out.shape == (3, 1)
    assert ((out > 0) & (out < 5.5)).all()
    linears = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(10, 8), (8, 5), (5, 1)]


def test_classifier_expected_rating_between_levels() -> None:
    m = RatingClassifier([(5, 3), (5, 3)], levels=[1, 2, 3, 4, 5], layers=[4])
    logits = m(torch.tensor([[1, 1], [2, 3]]))
    assert logits.shape == (2, 5)
    r = m.expected_rating(logits)
    assert ((r >= 1) & (r <= 5)).all()
    sure = torch.tensor([[0.0, 0, 0, 50, 0]])
    assert abs(m.expected_rating(sure).item() - 4.0) < 1e-4
    assert m.level_index(torch.tensor([1.0, 4.0, 5.0])).tolist() == [0, 3, 4]


def test_pca_is_centred_and_ordered() -> None:
    torch.manual_seed(0)
    x = torch.randn(200, 2) @ torch.tensor([[5.0, 0.0], [0.0, 0.5]]) + 3
    scores = pca(x, 2)
    assert torch.allclose(scores.mean(0), torch.zeros(2), atol=1e-4)
    assert scores[:, 0].var() > 10 * scores[:, 1].var()
