"""The guide of XoT: a small policy-value network trained by AlphaZero-style MCTS self-play
on a task's formal state space (`task.state_space()`), cached per recipe, and the batched
MCTS that proposes thought trajectories with it. Part of `search/`: imports `tasks` only."""

from search.guide.cache import load_or_train
from search.guide.mcts import Cost, GuideSearch, Node
from search.guide.net import PolicyValueNet
from search.guide.train import GuideConfig, train_guide

__all__ = ["Cost", "GuideConfig", "GuideSearch", "Node", "PolicyValueNet", "load_or_train", "train_guide"]
