"""Expert Iteration's data handling: keep correct traces, deduplicate, accumulate."""

from tasks import Problem
from training.ei import expert_examples, merge

from fixed_results import searched


def result_for(problem_id, completions):
    """`fixed_results.searched` for a bare problem named `problem_id`."""
    return searched(Problem(problem_id, "q", "a"), f"prompt {problem_id}\n", completions)


def test_keeps_only_correct_and_deduplicates_within_a_round():
    results = [result_for("p1", [("1+2=3\n", 1.0), ("1+2 =3\n", 0.0), ("1 + 2=3\n", 1.0), ("1+2=3\n", 1.0)]),
               result_for("p2", [("x\n", 0.0)])]
    data = expert_examples(results, iteration=1, strategy="sampling")
    assert [d["completion"] for d in data] == ["1+2=3\n", "1 + 2=3\n"]
    assert all(d["problem_id"] == "p1" and d["iteration"] == 1 and d["strategy"] == "sampling" for d in data)
    assert data[0]["prompt"] == "prompt p1\n"


def test_whitespace_variants_are_duplicates_and_same_text_on_other_problem_is_not():
    results = [result_for("p1", [("a  b\n", 1.0), ("a b\n", 1.0)]), result_for("p2", [("a b\n", 1.0)])]
    data = expert_examples(results, iteration=1)
    assert [(d["problem_id"], d["completion"]) for d in data] == [("p1", "a  b\n"), ("p2", "a b\n")]


def test_merge_is_a_union_keeping_the_earliest_copy():
    first = expert_examples([result_for("p1", [("s1\n", 1.0)])], iteration=1)
    second = expert_examples([result_for("p1", [("s1\n", 1.0), ("s2\n", 1.0)])], iteration=2)
    merged = merge(first, second)
    assert [(d["completion"], d["iteration"]) for d in merged] == [("s1\n", 1), ("s2\n", 2)]
