"""Importers: the checkpoints people have, read into our structure exactly, with an ImportReport.

One module per family, each a reader the loader's tables point to (``attnres.loader``: the detection
order, which layout goes where):

  gpt2.py      nanoGPT ``ckpt.pt`` and Hugging Face GPT-2 directories
  peers.py     tokenbender/nanogpt-attnres-repro (AttnRes and its PreNorm twin)
  nanogpt_attnres.py  the nanoGPT AttnRes PR layout and limei1221/nanoAttnRes
  attnresgpt.py       AtinChing/AttnResGPT-next-scale step_*.pt with its config.snapshot.yaml
  lr_attnres.py       jon123boss/LR-AttnRes: recognised and refused, naming the setting
  jibran.py           jibran/Attention-Residuals best.pt / latest.pt (Full AttnRes, BaselineLM)
  qwen3_attnres.py    Zefan-Cai/open-attention-residuals qwen3_attnres directories (block mode)
  common.py    what every importer ends with (``finish_import``: head tying, tokenizer, config,
               checked tensors, ImportReport) and the readers several families share
  mapping.py   the regex tables that rename foreign keys to ours
  pickles.py   the only two ways a pickle is read (``torch.load(weights_only=True)``, ``meta.pkl``)
  vocab.py     the tokenizer, looked for where each project keeps it
  hf_cache.py  the models already in the local Hugging Face cache, listed offline

Importers build on ``attnres.checkpoint`` (CheckpointError, ``build_model``, through ``common``) and
never on the loader.
"""

from ..import_report import ImportReport

__all__ = ["ImportReport"]
