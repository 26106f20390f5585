"""The pipeline's stages, one module each, run by DVC as `python -m rnn_sentiment.stages.NAME`.

Importing the package notes the process that launched the stage before the stage module's own
imports run (torch alone takes seconds): a stage whose `dvc` is killed meanwhile still ends with it.
"""

from rnn_sentiment.lifecycle import remember_launcher

remember_launcher()
