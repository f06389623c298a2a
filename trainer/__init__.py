"""The trainer: turns the feedback store into a better policy. The reward model (Bradley-Terry on pairs
plus thumbs), SFT on corrections, PPO with the group baseline against a composite reward (the reward
model plus verifiable checks), DPO on pairs, KTO on thumbs; one refresh (`trainer.refresh`) runs them on
one snapshot and publishes a candidate for the registry's gate; `trainer.worker` runs refreshes in the
background. Torch and transformers are imported lazily, inside the functions that train.
"""
