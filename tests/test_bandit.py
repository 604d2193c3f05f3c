"""The canned-reply bandit of notebook 01: REINFORCE learns, a baseline lowers variance, the maths is right."""
import numpy as np
import pytest
import torch

from rlhf_lab import bandit


def test_seed_lesson_world():
    assert bandit.REPLIES == ("Great idea!", "Not sure about that.", "Interesting thought.")
    assert [bandit.reward_model(r) for r in bandit.REPLIES] == [10, 5, 7]
    assert bandit.reward_model("something else") == 0
    assert bandit.expected_reward(np.full(3, 1 / 3)) == pytest.approx(22 / 3)


def test_reinforce_default_run_learns():
    history = bandit.reinforce()
    assert history.expected_reward[0] == pytest.approx(22 / 3)
    assert history.expected_reward[-1] >= 9.5
    assert history.probs[-1].argmax() == 0
    assert history.entropy[-1] < history.entropy[0]


def test_reinforce_with_baseline_learns():
    history = bandit.reinforce(bandit.ReinforceConfig(baseline=True))
    assert history.expected_reward[-1] >= 9.5


def test_reinforce_is_deterministic_under_a_seed():
    a = bandit.reinforce(bandit.ReinforceConfig(seed=3))
    b = bandit.reinforce(bandit.ReinforceConfig(seed=3))
    c = bandit.reinforce(bandit.ReinforceConfig(seed=4))
    np.testing.assert_array_equal(a.probs, b.probs)
    assert not np.array_equal(a.probs, c.probs)


@pytest.mark.parametrize("logits", [np.zeros(3), np.array([0.5, -1.0, 2.0])])
def test_baseline_lowers_gradient_variance_without_bias(logits):
    exact = bandit.exact_gradient(logits)
    b = bandit.expected_reward(bandit.softmax(logits))
    mean_plain, var_plain = bandit.gradient_variance(logits, baseline=None, n_samples=50_000)
    mean_base, var_base = bandit.gradient_variance(logits, baseline=b, n_samples=50_000)
    assert var_base < 0.5 * var_plain
    # both estimators are unbiased: within 4 standard errors of the exact gradient
    for mean, var in ((mean_plain, var_plain), (mean_base, var_base)):
        assert np.all(np.abs(mean - exact) < 4 * np.sqrt(var / 50_000))


def test_large_learning_rate_without_baseline_can_lock_onto_a_worse_reply():
    wrong = {use: sum(bandit.reinforce(bandit.ReinforceConfig(lr=5.0, baseline=use, seed=s)).probs[-1].argmax() != 0
                      for s in range(30)) for use in (False, True)}
    assert wrong[False] >= 3 and wrong[True] == 0


def test_grad_log_prob_matches_autograd():
    logits = np.array([0.3, -0.7, 1.1])
    for action in range(3):
        t = torch.tensor(logits, requires_grad=True)
        torch.log_softmax(t, 0)[action].backward()
        np.testing.assert_allclose(bandit.grad_log_prob(logits, action), t.grad.numpy(), atol=1e-10)


def test_exact_gradient_matches_autograd_of_expected_reward():
    logits = np.array([0.2, 0.4, -0.1])
    t = torch.tensor(logits, requires_grad=True)
    r = torch.tensor([10.0, 5.0, 7.0], dtype=torch.float64)
    (torch.softmax(t, 0) @ r).backward()
    np.testing.assert_allclose(bandit.exact_gradient(logits), t.grad.numpy(), atol=1e-10)


def test_kl_regularized_optimum_beats_every_other_policy_on_its_objective():
    beta, ref = 2.0, np.full(3, 1 / 3)
    r = np.array([10.0, 5.0, 7.0])

    def objective(p):
        return p @ r - beta * np.sum(p * np.log(p / ref))

    best = bandit.kl_regularized_optimum(beta)
    rng = np.random.default_rng(0)
    for _ in range(200):
        other = rng.dirichlet(np.ones(3))
        assert objective(best) >= objective(other) - 1e-12
    assert bandit.kl_regularized_optimum(0.01)[0] > 0.999
    with pytest.raises(ValueError):
        bandit.kl_regularized_optimum(0.0)


def test_bad_config_and_missing_reward_are_clear_errors():
    with pytest.raises(ValueError, match="batch_size"):
        bandit.reinforce(bandit.ReinforceConfig(batch_size=0))
    with pytest.raises(KeyError, match="no reward for replies"):
        bandit.reinforce(rewards={"Great idea!": 1})


def test_reinforce_with_the_kl_shaped_reward_finds_the_closed_form_optimum():
    for beta, seed in [(2.0, 0), (0.5, 1)]:
        history = bandit.reinforce(bandit.ReinforceConfig(steps=300, lr=0.5, baseline=True, beta=beta, seed=seed))
        np.testing.assert_allclose(history.probs[-1], bandit.kl_regularized_optimum(beta), atol=0.01)
    plain = bandit.reinforce(bandit.ReinforceConfig(steps=300, lr=0.5, baseline=True, seed=0))
    assert plain.probs[-1][0] > 0.99                       # without the KL term it collapses onto the best reply
