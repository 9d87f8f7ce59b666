"""GSM8K, SVAMP and Game of 24 on the real data files; arithmetic chains; reward modes."""

import json

import pytest

from tasks.answers import extract_number, parse_number
from tasks.arith import Arith
from tasks.data import data_root
from tasks.game24 import Game24
from tasks.gsm8k import GSM8K
from tasks.rewards import step_rewards
from tasks.svamp import SVAMP

DATA = data_root()  # $PLATEAU_DATA, else shared/data beside the checkout
needs_data = pytest.mark.skipif(not (DATA / "gsm8k" / "train.jsonl").is_file(), reason=f"no data at {DATA}")


@pytest.fixture(scope="module")
def gsm8k():
    return GSM8K(path=str(DATA / "gsm8k"))


@needs_data
def test_gsm8k_extraction_matches_every_train_gold(gsm8k):
    problems = gsm8k.problems("train")
    assert len(problems) == 7473
    raw = [json.loads(line)["answer"] for line in (DATA / "gsm8k" / "train.jsonl").open()]
    for problem, answer in zip(problems, raw):
        assert extract_number(answer) == parse_number(problem.answer), problem.id
        trace = gsm8k.reference_traces(problem)[0]
        assert "<<" not in trace and gsm8k.reward(problem, trace) == 1.0, problem.id


@needs_data
def test_gsm8k_dense_reward(gsm8k):
    for problem in gsm8k.problems("train", limit=500, seed=0):
        trace = gsm8k.reference_traces(problem)[0]
        assert step_rewards(gsm8k, problem, trace, "dense") == [1.0] * len(gsm8k.split_steps(trace))
    problem = gsm8k.problems("train")[0]  # Natalia: 48/2 = 24, 48+24 = 72
    assert problem.meta["intermediates"] == ["24", "72"]
    wrong = "Natalia sold 48/2 = 25 clips in May.\nNatalia sold 48+25 = 73 clips.\nThe answer is 73.\n"
    assert step_rewards(gsm8k, problem, wrong, "dense") == [0.0, 0.0, 0.0]
    assert step_rewards(gsm8k, problem, wrong, "sparse") == [0.0, 0.0, 0.0]


@needs_data
def test_prompt_styles(gsm8k):
    problem = gsm8k.problems("test")[0]
    assert gsm8k.prompt(problem) == f"Question: {problem.question}\nAnswer:\n"
    fewshot = GSM8K(path=str(DATA / "gsm8k"), prompt_style="fewshot", fewshot_k=2)
    assert fewshot.prompt(problem).count("The answer is") == 2 and fewshot.prompt(problem).endswith(gsm8k.prompt(problem))
    chat = GSM8K(path=str(DATA / "gsm8k"), prompt_style="chat")
    with pytest.raises(ValueError, match="set_chat_template"):
        chat.prompt(problem)
    chat.set_chat_template(lambda messages: f"<user>{messages[0]['content']}</user><assistant>")
    assert chat.prompt(problem).endswith(f"{problem.question}</user><assistant>")
    with pytest.raises(ValueError, match="prompt_style"):
        GSM8K(prompt_style="fancy")


def test_malformed_gsm8k_names_file_and_line(tmp_path):
    good = json.dumps({"question": "q", "answer": "1+1 = <<1+1=2>>2\n#### 2"})
    (tmp_path / "train.jsonl").write_text(good + "\n" + good + "\n{broken\n")
    with pytest.raises(ValueError, match=r"train\.jsonl:3"):
        GSM8K(path=str(tmp_path)).problems("train")
    (tmp_path / "test.jsonl").write_text(good + "\n" + json.dumps({"question": "q", "answer": "2"}) + "\n")
    with pytest.raises(ValueError, match=r"test\.jsonl:2: no '####"):
        GSM8K(path=str(tmp_path)).problems("test")
    with pytest.raises(ValueError, match="'dev'"):
        GSM8K(path=str(tmp_path)).problems("dev")


@needs_data
def test_svamp_all_answers():
    task = SVAMP(str(DATA / "svamp"))
    problems = task.problems("train") + task.problems("test")
    assert len(problems) == 1000 and len({p.id for p in problems}) == 1000
    rows = json.loads((DATA / "svamp" / "SVAMP.json").read_text())
    gold = {f"svamp-{r['ID']}": r["Answer"] for r in rows}
    for p in problems:
        trace = task.reference_traces(p)[0]
        assert float(extract_number(trace)) == pytest.approx(gold[p.id]) and task.reward(p, trace) == 1.0


def test_malformed_svamp_names_file(tmp_path):
    (tmp_path / "SVAMP.json").write_text('[{"Body": "b", "Question": "q", "Answer": 3}, {"Body": "b"}]')
    with pytest.raises(ValueError, match=r"SVAMP\.json: problem #1"):
        SVAMP(str(tmp_path)).problems()


@needs_data
def test_game24_tot_split_and_verifier():
    task = Game24(path=str(DATA / "game24"))
    tot = task.problems("tot")
    assert [p.id for p in tot] == [f"game24-{r:04d}" for r in range(901, 1001)] and len(task.problems("train")) == 1262
    for p in tot:
        traces = task.reference_traces(p)
        assert traces and all(task.reward(p, t) == 1.0 for t in traces)
    p = task.make_problem("p", [4, 9, 10, 13], 24)
    assert task.check_answer(p, "(10 - 4) * (13 - 9)") and task.check_answer(p, "4 * (10 + 9 - 13)")
    assert not task.check_answer(p, "(10 - 4) * (10 - 4)")  # reused numbers
    assert not task.check_answer(p, "(10 - 4) * (13 - 9) + 1")  # wrong arithmetic / invented number
    assert not task.check_answer(p, "13 / (9 - 9) + 4 * 10")  # division by zero
    assert task.reward(p, "10 - 4 = 7 (left: 9 13 7)\n") == 0.0
    assert task.step_reward(p, "", "13 / 0 = 0 (left: 4 9 10 0)\n") == 0.0


def test_malformed_game24_names_line(tmp_path):
    (tmp_path / "24.csv").write_text("Rank,Puzzles\n1,1 1 4 6\n2,1 x 4\n")
    with pytest.raises(ValueError, match=r"24\.csv:3"):
        Game24(path=str(tmp_path)).problems("train")


def test_generated_game24_and_arith():
    game = Game24(train_size=10, test_size=5)
    assert len(game.problems("tot")) == 5
    for p in game.problems("train"):
        assert len(p.meta["numbers"]) == 4 and all(game.reward(p, t) == 1.0 for t in game.reference_traces(p))
    arith = Arith(train_size=50, test_size=10, seed=1)
    assert arith.problems("test") == Arith(train_size=50, test_size=10, seed=1).problems("test")
    for p in arith.problems("train"):
        trace = arith.reference_traces(p)[0]
        assert arith.reward(p, trace) == 1.0 and set(step_rewards(arith, p, trace, "dense")) == {1.0}
    p = arith.problems("test")[0]
    wrong = arith.reference_traces(p)[0].replace(" = ", " = 1", 1)
    assert arith.reward(p, wrong) == 0.0 and step_rewards(arith, p, wrong, "dense")[0] == 0.0
    assert arith.reward(p, "x" * 100_000) == 0.0
    with pytest.raises(ValueError, match="reward_mode"):
        step_rewards(arith, p, "", "medium")
