"""The report's health table: pooled figures and the flags that mark a broken cell."""

from search.run_folder import finite
from training.cell_health import cell_health, markdown, run_health


def train_row(**kw):
    row = {"kind": "train", "n_traces": 100, "traces_dropped": 0, "spent_fraction_mean": 1.0,
           "spent_fraction_min": 1.0, "stop_budget": 10, "stop_exhausted": 0, "stop_size": 0,
           "value_auc": 0.9, "eval_parse_rate": None, "ratio_dev": 1e-9}
    return {**row, **kw}


def test_a_healthy_cell_has_no_flags_and_pools_its_runs():
    h = cell_health([run_health([train_row(), train_row(value_auc=0.7)]), run_health([train_row(stop_budget=4,
                                                                                               stop_exhausted=6)])])
    assert h["flags"] == [] and h["stop_budget"] == 24 and h["stop_exhausted"] == 6
    assert h["value_auc"] == (0.8 + 0.9) / 2  # mean over runs of each run's mean over iterations


def test_each_broken_figure_raises_its_flag():
    spent = cell_health([run_health([train_row(spent_fraction_mean=0.6, spent_fraction_min=0.2)])])
    blind = cell_health([run_health([train_row(value_auc=0.5)])])
    dropping = cell_health([run_health([train_row(traces_dropped=6)])])
    assert [len(h["flags"]) for h in (spent, blind, dropping)] == [1, 1, 1]
    assert "spent 0.60" in spent["flags"][0] and "no signal" in blind["flags"][0] and "6%" in dropping["flags"][0]
    assert cell_health([run_health([train_row(traces_dropped=5)])])["flags"] == []  # 5% is the limit, not over it
    table = markdown([("tot", "ei", blind)])
    assert "| tot | ei | 1.00 (1.00) | 10/0/0 | 0.50 |" in table and "no signal" in table


def test_missing_figures_are_not_flagged():
    h = cell_health([run_health([{"kind": "train", "n_traces": 0}])])
    assert h["flags"] == [] and h["spent"] is None and h["value_auc"] is None and h["dropped"] is None


def test_an_update_that_leaves_its_rollouts_policy_far_behind_is_flagged():
    """approx_kl is pooled as the worst round of the worst run: one runaway round is enough
    (the lab's healthy PPO rounds measured 0.015-0.097; runaway ones 0.22-0.74)."""
    steady = run_health([train_row(approx_kl=0.02), train_row(approx_kl=0.04)])
    runaway = run_health([train_row(approx_kl=0.08), train_row(approx_kl=0.49)])
    h = cell_health([steady, runaway])
    assert h["approx_kl_max"] == 0.49 and len(h["flags"]) == 1 and "approx_kl 0.49 (> 0.15)" in h["flags"][0]
    assert cell_health([steady])["flags"] == []
    assert cell_health([run_health([train_row(approx_kl=0.15)])])["flags"] == []  # the limit, not over it
    assert cell_health([run_health([train_row()])])["approx_kl_max"] is None  # EI logs no approx_kl
    assert "| 0.490 | – | update approx_kl 0.49" in markdown([("sampling", "ppo", h)])  # rows without kl_stopped


def test_an_update_whose_approx_kl_was_not_a_number_is_flagged():
    """The metrics file writes NaN as null: a PG row with `approx_kl: null` is a diverged update
    (it must not read as "not measured", which is a row without the key, as EI's)."""
    diverged = run_health([train_row(approx_kl=0.03), finite(train_row(approx_kl=float("nan")))])
    h = cell_health([diverged, run_health([train_row(approx_kl=0.02)])])
    assert h["approx_kl_nonfinite"] == 1 and h["approx_kl_max"] == 0.03
    assert h["flags"] == ["update approx_kl not a number in 1 round(s): the update diverged"]
    assert cell_health([run_health([train_row(), train_row()])])["flags"] == []  # EI: no key, no flag


def test_the_table_counts_the_rounds_target_kl_stopped_early():
    stopping = run_health([train_row(approx_kl=0.05, kl_stopped=1.0, pg_updates=3),
                           train_row(approx_kl=0.04, kl_stopped=0.0, pg_updates=90)])
    h = cell_health([stopping, run_health([train_row(approx_kl=0.02, kl_stopped=1.0)])])
    assert (h["kl_stops"], h["pg_rounds"], h["flags"]) == (2, 3, [])
    assert "| 0.050 | 2/3 | ok |" in markdown([("sampling", "ppo", h)])
    assert "| – | – | ok |" in markdown([("sampling", "ei", cell_health([run_health([train_row()])]))])


def test_a_cell_that_gave_its_trainer_nothing_to_learn_from_is_flagged():
    """The laboratory's pretrained start ended every sample with EOS: a round of 1,789 problems
    x 256 tokens drew ~458k one-token traces and solved nothing. Such a cell's flat curve is a
    base that cannot answer, not a trainer that failed to learn."""
    mute = cell_health([run_health([train_row(n_traces=457_984, search_tokens=457_984, train_solved=0.0)] * 2)])
    assert mute["trace_tokens"] == 1.0 and mute["solved_max"] == 0.0
    assert mute["flags"] == ["traces average 1.0 tokens (< 2): the policy ends them at once",
                             "no round solved a train problem: its trainer had no correct trace"]
    learning = run_health([train_row(n_traces=11_401, search_tokens=457_984, train_solved=0.0),
                           train_row(n_traces=11_525, search_tokens=457_984, train_solved=0.01)])
    assert cell_health([learning])["flags"] == []  # one solved round is signal; ~40 tokens a trace
    assert cell_health([run_health([train_row()])])["solved_max"] is None  # no train_solved: not judged
