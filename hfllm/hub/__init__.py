"""Pushing a stage folder to the Hugging Face Hub (push.py) with its model card (card.py)."""
