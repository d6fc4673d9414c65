"""The model index: what a model is (id, revision, files and digests, input spec,
preprocessing, licence), drawn from timm's pretrained catalog, Hugging Face repos
and local imports. Nothing here imports torch; timm is imported only to build the
catalog index once per installed timm version."""
