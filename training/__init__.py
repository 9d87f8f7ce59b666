"""Trainers (EI, PPO, GRPO, RCRL, ORM), metrics, the iteration loop, checkpoints, reports."""
