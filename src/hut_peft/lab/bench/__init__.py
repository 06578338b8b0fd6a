"""`hut-peft bench`: speed and memory of HUT against LoRA, (IA)³, full fine-tuning and the frozen model.

run.py holds the command and the training, inference, mixed-batch, compile and QLoRA sections; serving.py the
many-adapters-in-one-batch section; timing.py the interleaved medians both use.
"""
