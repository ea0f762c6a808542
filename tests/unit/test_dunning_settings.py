"""The dunning policy a process folds with comes from its settings, the rest of the policy kept."""

from __future__ import annotations

from jobmeter.settings import Settings
from projections import catalog
from projections.key_lifecycle.dunning import DEFAULT_POLICY
from projections.key_lifecycle.projection import KeyLifecycle


def test_the_pause_and_write_off_rules_follow_the_settings() -> None:
    default = catalog.get("key-lifecycle").configured(Settings(jobmeter_env="development"))
    assert isinstance(default, KeyLifecycle)
    assert (default.policy.suspend_paused, default.policy.write_off_uncollectible) == (True, False)
    chosen = KeyLifecycle().configured(Settings(
        jobmeter_env="development", jobmeter_dunning_suspend_paused=False,
        jobmeter_dunning_write_off_uncollectible=True,
    ))
    assert (chosen.policy.suspend_paused, chosen.policy.write_off_uncollectible) == (False, True)
    assert chosen.policy.past_due_grace == DEFAULT_POLICY.past_due_grace
