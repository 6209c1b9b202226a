"""Physics helpers shared by the served models, the generators and the trainers.

They build model inputs from detector-level objects and interpret outputs, with numpy only, so that
served and offline inputs can never drift apart.
"""
