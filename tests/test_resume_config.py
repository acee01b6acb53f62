"""check_resumable: which stored configs a run may resume (forget_jax/run.py)."""

import json

import pytest

from configs import forget as forget_config
from forget_jax import run


def _stored(tmp_path, config, drop=()):
    """A workdir whose config.json is ``config`` without the dotted keys ``drop`` (a run made
    before those fields existed), with a results.json so it counts as a run."""
    d = json.loads(json.dumps(config.to_dict()))
    for key in drop:
        *parents, leaf = key.split(".")
        node = d
        for p in parents:
            node = node[p]
        del node[leaf]
    (tmp_path / "config.json").write_text(json.dumps(d))
    (tmp_path / "results.json").write_text("{}")
    return str(tmp_path)


def test_a_run_made_before_the_added_fields_resumes_under_their_neutral_values(tmp_path):
    config = forget_config.get_config("task=copa")
    wd = _stored(tmp_path, config, drop=("forget.stop_rule", "forget.n_train"))
    run.check_resumable(config, wd)  # auto -> chance for random labels; n_train 0: accepted
    config.forget.n_train = 100
    with pytest.raises(run.ConfigError, match=r"forget\.n_train differ"):
        run.check_resumable(config, wd)


def test_an_old_flipped_run_does_not_resume_under_the_mirror_rule(tmp_path):
    config = forget_config.get_config("task=copa,forget_mode=flipped")
    wd = _stored(tmp_path, config, drop=("forget.stop_rule",))  # old code: chance rule
    with pytest.raises(run.ConfigError, match=r"forget\.stop_rule differ"):
        run.check_resumable(config, wd)  # auto resolves to mirror for flipped labels
    config.forget.stop_rule = "chance"
    run.check_resumable(config, wd)


def test_a_changed_nested_field_is_named_and_free_keys_are_ignored(tmp_path):
    config = forget_config.get_config("task=copa")
    wd = _stored(tmp_path, config)
    config.eval_batch_size = config.eval_batch_size + 1  # does not change results
    run.check_resumable(config, wd)
    config.finetune.lr = 1.0
    with pytest.raises(run.ConfigError, match=r"\(finetune\.lr differ\)"):
        run.check_resumable(config, wd)


@pytest.mark.parametrize(("text", "message"), [
    ('{"complete": tr', r"results\.json is not readable JSON \(Expecting value: line 1 column "
     r"14 \(char 13\)\); delete it"),
    ("[1, 2]", r"results\.json holds a list, not a JSON object"),
])
def test_a_malformed_results_json_is_one_config_error_before_any_compute(tmp_path, text,
                                                                         message):
    config = forget_config.get_config("task=copa")
    wd = _stored(tmp_path, config)
    (tmp_path / "results.json").write_text(text)
    with pytest.raises(run.ConfigError, match=message) as e:
        run.run(config, wd)  # refused at the complete-run check: no model load, no data
    assert "\n" not in str(e.value)
    assert (tmp_path / "results.json").read_text() == text  # left as it was


def test_complete_results_reads_only_a_complete_run(tmp_path):
    assert run.complete_results(tmp_path) is None  # no results.json
    (tmp_path / "results.json").write_text('{"complete": false, "task": "copa"}')
    assert run.complete_results(tmp_path) is None
    (tmp_path / "results.json").write_text('{"complete": true, "task": "copa"}')
    assert run.complete_results(tmp_path) == {"complete": True, "task": "copa"}
