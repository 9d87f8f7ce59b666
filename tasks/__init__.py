"""Problems, prompt formats, answer extraction and verifiers. Imports nothing of ours."""

from tasks.arith import Arith
from tasks.base import Problem, Task
from tasks.countdown import Countdown
from tasks.game24 import Game24
from tasks.gsm8k import GSM8K
from tasks.rewards import REWARD_MODES, step_rewards
from tasks.svamp import SVAMP

__all__ = ["REWARD_MODES", "Arith", "Countdown", "GSM8K", "Game24", "Problem", "SVAMP", "Task", "step_rewards"]
