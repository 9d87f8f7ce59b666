"""Overrides that shrink a whole `training.run` (base build, search, training, evaluation,
checkpoint) to seconds: 2 problems, 1 iteration, 2x2 evaluation samples."""

TINY_RUN = ["task.min_numbers=3", "task.max_numbers=3", "task.number_range=[1,5]", "task.target_range=[2,12]",
            "task.train_size=40", "task.test_size=4", "policy.sft_problems=8", "policy.sft.epochs=1",
            "policy.progress=false", "iterations=1", "train_problems=2", "eval.problems=2", "eval.k=2",
            "eval.max_new_tokens=24", "search.max_new_tokens=16", "health.nodes=2", "health.rollouts=2",
            "save_trees=0", "progress=false"]

#: A short run with several rounds to checkpoint, kill and resume (test_checkpoint, test_resume):
#: the caller adds `iterations=N` (2 or 3).
RESUMABLE_RUN = ["train_problems=6", "eval.problems=4", "eval.k=2", "eval.max_new_tokens=40",
                 "task.train_size=40", "task.test_size=8", "task.max_numbers=3", "task.number_range=[1,5]",
                 "task.target_range=[2,12]", "policy.sft_problems=8", "policy.sft.epochs=1", "search.n=2",
                 "search.max_new_tokens=40", "trainer.sft.epochs=1", "trainer.sft.batch_size=4",
                 "trainer.reset_each_round=false", "progress=false", "save_trees=1"]
