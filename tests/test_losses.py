"""The metric-learning losses against naive loop implementations, and their known behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maskbench.training.losses import make_loss, pairwise_distances, semi_hard_negatives

torch.set_num_threads(1)


def _batch(seed: int, n_ids: int = 4, k: int = 3, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_ids), k)
    rng.shuffle(labels)
    return rng.normal(size=(labels.size, dim)), labels


def _loss(spec: dict, x: np.ndarray, labels: np.ndarray, n_classes: int = 4) -> float:
    fn = make_loss(spec, x.shape[1], n_classes).double()
    return float(fn(torch.tensor(x), torch.tensor(labels)).detach())


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# naive references: explicit python loops in float64


def naive_supcon(x, labels, t):
    z = _unit(x)
    n = len(labels)
    total, anchors = 0.0, 0
    for i in range(n):
        positives = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(z[i] @ z[a] / t) for a in range(n) if a != i)
        total += -sum(math.log(math.exp(z[i] @ z[p] / t) / denominator) for p in positives) / len(positives)
        anchors += 1
    return total / anchors


def naive_arcface(x, labels, centres, m, s, gamma):
    z, w = _unit(x), _unit(centres)
    total = 0.0
    for i, y in enumerate(labels):
        logits = []
        for j in range(len(w)):
            cos = float(np.clip(z[i] @ w[j], -1, 1))
            if j == y:
                theta = math.acos(cos)
                cos = math.cos(theta + m) if theta + m <= math.pi else cos - m * math.sin(m)
            logits.append(s * cos)
        top = max(logits)
        p = math.exp(logits[y] - top) / sum(math.exp(v - top) for v in logits)
        total += -((1 - p) ** gamma) * math.log(p)
    return total / len(labels)


def naive_distance(z, a, b):
    return math.sqrt(sum((z[a, k] - z[b, k]) ** 2 for k in range(z.shape[1])))


def naive_triplet(x, labels, margin, mining):
    z = _unit(x)
    n = len(labels)
    losses = []
    for a in range(n):
        positives = [p for p in range(n) if p != a and labels[p] == labels[a]]
        negatives = [q for q in range(n) if labels[q] != labels[a]]
        if not positives:
            continue
        if mining == "batch_hard":
            d_ap = max(naive_distance(z, a, p) for p in positives)
            d_an = min(naive_distance(z, a, q) for q in negatives)
            losses.append(max(0.0, d_ap - d_an + margin))
            continue
        for p in positives:
            d_ap = naive_distance(z, a, p)
            farther = [naive_distance(z, a, q) for q in negatives if naive_distance(z, a, q) > d_ap]
            d_an = min(farther) if farther else min(naive_distance(z, a, q) for q in negatives)
            losses.append(max(0.0, d_ap - d_an + margin))
    return sum(losses) / len(losses)


# ---------------------------------------------------------------------------------------------
# against the references


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("t", [0.1, 0.5])
def test_supcon_matches_naive_loop(seed, t):
    x, labels = _batch(seed)
    assert _loss({"kind": "supcon", "temperature": t}, x, labels) == pytest.approx(naive_supcon(x, labels, t), rel=1e-9)


def test_supcon_leaves_out_anchors_without_positive():
    x, labels = _batch(3)
    labels = np.append(labels, 99)  # a singleton: only a negative for the others
    x = np.vstack([x, np.ones((1, x.shape[1]))])
    assert _loss({"kind": "supcon"}, x, labels) == pytest.approx(naive_supcon(x, labels, 0.1), rel=1e-9)


def test_supcon_with_one_positive_is_infonce():
    """Pairs (one positive per anchor): InfoNCE = cross-entropy over the other samples' similarities."""
    x, _ = _batch(4, n_ids=5, k=2)
    labels = np.repeat(np.arange(5), 2)
    z = torch.nn.functional.normalize(torch.tensor(x), dim=1)
    logits = (z @ z.T / 0.1).fill_diagonal_(-math.inf)
    partner = torch.arange(10).view(5, 2).flip(1).reshape(-1)  # the other sample of each pair
    infonce = torch.nn.functional.cross_entropy(logits, partner)
    assert _loss({"kind": "supcon"}, x, labels) == pytest.approx(float(infonce), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("margin,scale", [(0.5, 30.0), (0.2, 8.0)])
def test_arcface_matches_naive_loop(seed, gamma, margin, scale):
    x, labels = _batch(seed)
    fn = make_loss({"kind": "arcface", "margin": margin, "scale": scale, "focal_gamma": gamma}, 6, 4).double()
    got = float(fn(torch.tensor(x), torch.tensor(labels)).detach())
    expected = naive_arcface(x, labels, fn.centres.detach().numpy(), margin, scale, gamma)
    assert got == pytest.approx(expected, rel=1e-7)


def test_arcface_falls_back_when_theta_plus_margin_exceeds_pi():
    fn = make_loss({"kind": "arcface", "margin": 0.5, "scale": 4.0}, 3, 2).double()
    with torch.no_grad():
        fn.centres.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64))
    x = np.array([[-1.0, 0.05, 0.0], [-1.0, -0.3, 0.1]])  # theta near pi from centre 0
    labels = np.array([0, 0])
    theta = math.acos(_unit(x)[0, 0])
    assert theta + 0.5 > math.pi
    got = float(fn(torch.tensor(x), torch.tensor(labels)).detach())
    assert got == pytest.approx(naive_arcface(x, labels, fn.centres.detach().numpy(), 0.5, 4.0, 0.0), rel=1e-9)
    # the target logit keeps falling as theta grows past pi - m, where cos(theta + m) rises again
    angles = [math.pi - 0.4, math.pi - 0.2, math.pi - 0.05]
    probes = torch.tensor([[math.cos(a), math.sin(a), 0.0] for a in angles], dtype=torch.float64)
    target = fn.logits(probes, torch.tensor([0, 0, 0]))[:, 0].detach().numpy()
    assert target[0] > target[1] > target[2]
    assert [4.0 * math.cos(a + 0.5) for a in angles] == sorted(4.0 * math.cos(a + 0.5) for a in angles)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_triplet_matches_naive_loop(seed, mining, margin):
    x, labels = _batch(seed)
    got = _loss({"kind": "triplet", "margin": margin, "mining": mining}, x, labels)
    assert got == pytest.approx(naive_triplet(x, labels, margin, mining), rel=1e-6, abs=1e-9)


def test_pairwise_distances_match_numpy():
    x, _ = _batch(5)
    z = _unit(x)
    expected = np.linalg.norm(z[:, None, :] - z[None, :, :], axis=2)
    got = pairwise_distances(torch.tensor(z)).numpy()
    np.testing.assert_allclose(got[~np.eye(len(z), dtype=bool)], expected[~np.eye(len(z), dtype=bool)], rtol=1e-7)


# ---------------------------------------------------------------------------------------------
# known cases


def test_semi_hard_picks_the_expected_negative():
    # points on a line: anchor 0 and its positive 1 (label 0), negatives 2, 3, 4 (label 1), and a
    # second pair 5, 6 (label 2) far apart so no negative is farther than the positive
    pos = np.array([0.0, 0.5, 0.3, -0.6, 0.9, 10.0, 13.0])
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    dist = torch.tensor(np.abs(pos[:, None] - pos[None, :]))
    chosen = semi_hard_negatives(dist, labels)
    # from 0: positive at 0.5; negatives at 0.3 (harder), 0.6 (semi-hard), 0.9 -> 3
    assert int(chosen[0, 1]) == 3
    # from 1: positive at 0.5; negatives at 0.2, 1.1, 0.4 -> the nearest farther one is 3 (1.1)
    assert int(chosen[1, 0]) == 3
    # from 5: positive at 3; every negative (9.1 to 10.6 away) is farther -> the nearest, 4 (9.1)
    assert int(chosen[5, 6]) == 4
    # from 6: positive at 3; negatives 12.1+ away -> nearest farther is 4 (12.1)
    assert int(chosen[6, 5]) == 4
    # not positive pairs
    assert int(chosen[0, 2]) == -1 and int(chosen[0, 0]) == -1


def test_semi_hard_falls_back_to_the_hardest_negative():
    pos = np.array([0.0, 2.0, 0.3, 1.0])  # anchor 0, positive 1 at 2.0; negatives at 0.3 and 1.0
    dist = torch.tensor(np.abs(pos[:, None] - pos[None, :]))
    chosen = semi_hard_negatives(dist, torch.tensor([0, 0, 1, 1]))
    assert int(chosen[0, 1]) == 2  # none farther than 2.0: the nearest negative
    assert int(chosen[1, 0]) == 3  # from 1: negatives at 1.7 and 1.0, none beyond 2.0 -> 3


SPECS = [
    {"kind": "supcon"},
    {"kind": "arcface"},
    {"kind": "arcface", "focal_gamma": 2.0},
    {"kind": "triplet", "mining": "batch_hard"},
    {"kind": "triplet", "mining": "semi_hard"},
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_gradients_flow(spec):
    x, labels = _batch(7)
    fn = make_loss(spec, 6, 4).double()
    emb = torch.tensor(x, requires_grad=True)
    loss = fn(emb, torch.tensor(labels))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert torch.isfinite(emb.grad).all() and float(emb.grad.abs().sum()) > 0
    for p in fn.parameters():  # ArcFace's class centres learn too
        assert p.grad is not None and float(p.grad.abs().sum()) > 0


def _clusters(seed: int, n_ids: int = 4, k: int = 4, dim: int = 8):
    """Tight clusters around orthogonal directions: labels by cluster, and the same shuffled."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:n_ids]
    labels = np.repeat(np.arange(n_ids), k)
    x = centres[labels] + 0.05 * rng.normal(size=(labels.size, dim))
    shuffled = labels.copy()
    while (shuffled == labels).all():
        shuffled = rng.permutation(labels)
    return x, labels, shuffled, centres


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_separated_clusters_cost_less_than_shuffled_labels(spec):
    x, labels, shuffled, centres = _clusters(0)
    fn = make_loss(spec, x.shape[1], 4).double()
    if spec["kind"] == "arcface":  # class centres at the cluster directions
        with torch.no_grad():
            fn.centres.copy_(torch.tensor(centres))
    separated = float(fn(torch.tensor(x), torch.tensor(labels)).detach())
    mixed = float(fn(torch.tensor(x), torch.tensor(shuffled)).detach())
    assert separated < mixed
    if spec["kind"] == "triplet":  # clusters 0.05 apart inside, sqrt(2) apart between: no violation
        assert separated == 0.0


# ---------------------------------------------------------------------------------------------
# errors


def test_unknown_kind_and_option_are_named():
    with pytest.raises(ValueError, match="unknown loss kind 'cosface'"):
        make_loss({"kind": "cosface"}, 8, 4)
    with pytest.raises(ValueError, match=r"no option\(s\) \['temprature'\]"):
        make_loss({"kind": "supcon", "temprature": 0.1}, 8, 4)
    with pytest.raises(ValueError, match="unknown triplet mining 'hardest'"):
        make_loss({"kind": "triplet", "mining": "hardest"}, 8, 4)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        make_loss({"kind": "supcon", "temperature": 0}, 8, 4)
    with pytest.raises(ValueError, match="'kind'"):
        make_loss({"margin": 0.2}, 8, 4)


@pytest.mark.parametrize("spec", [s for s in SPECS if s["kind"] != "arcface"],
                         ids=lambda s: "-".join(str(v) for v in s.values()))
def test_a_batch_without_positive_pair_is_refused(spec):
    fn = make_loss(spec, 4, 4)
    with pytest.raises(ValueError, match="no positive pair"):
        fn(torch.randn(4, 4), torch.tensor([0, 1, 2, 3]))


def test_triplet_needs_a_negative():
    with pytest.raises(ValueError, match="no negative pair"):
        make_loss({"kind": "triplet"}, 4, 1)(torch.randn(3, 4), torch.tensor([5, 5, 5]))


def test_arcface_checks_labels_and_shapes():
    fn = make_loss({"kind": "arcface"}, 4, 3)
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        fn(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="built for 4"):
        fn(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer tensor"):
        fn(torch.randn(2, 4), torch.tensor([0.0, 1.0]))


def test_arcface_imprint_sets_centres_to_class_mean_directions():
    x, labels = _batch(8, n_ids=3, k=4)
    fn = make_loss({"kind": "arcface"}, 6, 4).double()
    untouched = fn.centres.detach().numpy()[3].copy()  # class 3 has no sample
    fn.imprint(torch.tensor(x), torch.tensor(labels))
    z = _unit(x)
    for c in range(3):
        mean = z[labels == c].mean(axis=0)
        np.testing.assert_allclose(fn.centres.detach().numpy()[c], mean / np.linalg.norm(mean), rtol=1e-9)
    np.testing.assert_array_equal(fn.centres.detach().numpy()[3], untouched)
