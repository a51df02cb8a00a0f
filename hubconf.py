"""PyTorch Hub entrypoints with NVIDIA's names, signatures and outputs.

    tacotron2 = torch.hub.load(repo_dir, 'nvidia_tacotron2', source='local', model_math='fp16')
    waveglow = torch.hub.load(repo_dir, 'nvidia_waveglow', source='local', model_math='fp16')
    waveglow = waveglow.remove_weightnorm(waveglow)
    utils = torch.hub.load(repo_dir, 'nvidia_tts_utils', source='local')
    sequences, lengths = utils.prepare_input_sequence(["Hello world."])
    mel, _, _ = tacotron2.infer(sequences, lengths)
    audio = waveglow.infer(mel)          # 22050 Hz

    hifigan, train_setup, denoiser = torch.hub.load(repo_dir, 'nvidia_hifigan', source='local')
    audio = denoiser(hifigan(mel).squeeze(1), strength=0.005)  # HiFi-GAN takes Tacotron 2's mels as well

With ``pretrained=True`` NVIDIA's files are looked up under their own names in
``$TORCH_HOME/checkpoints`` and torch.hub's checkpoint folder, then downloaded (set
``TACOGLOW_OFFLINE=1`` to forbid that); ``checkpoint=PATH`` names a file directly. As in
NVIDIA's entrypoints, the config then comes from the checkpoint and ``model_math`` only picks
the AMP-trained ('fp16') or fp32 file; the model is returned in fp32, on the CPU, in eval mode.
NVIDIA publishes one HiFi-GAN file (``hifigan_gen_checkpoint_10000_ft.pt``), read for either math.
"""
dependencies = ["torch", "numpy", "scipy", "librosa", "soundfile", "inflect", "unidecode"]


def _pretrained_path(model: str, kwargs: dict):
    from tacoglow.hub import fetch_nvidia_checkpoint

    checkpoint = kwargs.get("checkpoint")
    if checkpoint is not None:
        return checkpoint
    return fetch_nvidia_checkpoint(model, kwargs.get("model_math", "fp32"), bool(kwargs.get("force_reload", False)))


def nvidia_tacotron2(pretrained: bool = True, **kwargs):
    """Tacotron 2: NVIDIA's published weights, or (``pretrained=False``) a fresh model whose
    config keys may be overridden by ``kwargs``."""
    from tacoglow import Tacotron2, Tacotron2Config, load_tacotron2

    if pretrained:
        return load_tacotron2(_pretrained_path("tacotron2", kwargs))
    config = Tacotron2Config()
    for key, value in kwargs.items():
        if hasattr(config, key):
            setattr(config, key, value)
    return Tacotron2(config)


def nvidia_waveglow(pretrained: bool = True, **kwargs):
    """WaveGlow: NVIDIA's published weights, or (``pretrained=False``) a fresh model whose config
    keys (including ``n_layers``, ``n_channels``, ``kernel_size`` of NVIDIA's ``WN_config``) may be
    overridden by ``kwargs``."""
    from tacoglow import WaveGlow, WaveGlowConfig, load_waveglow

    if pretrained:
        return load_waveglow(_pretrained_path("waveglow", kwargs))
    config = WaveGlowConfig()
    for key, value in {**kwargs.pop("WN_config", {}), **kwargs}.items():
        if hasattr(config, key):
            setattr(config, key, value)
    return WaveGlow(config)


def nvidia_tts_utils():
    """An object with ``prepare_input_sequence(texts, cpu_run=False)`` and ``pad_sequences(batch)``."""
    from tacoglow.hub import TTSUtils

    return TTSUtils()


def nvidia_hifigan(pretrained: bool = True, model_math: str = "fp32", **kwargs):
    """HiFi-GAN as NVIDIA's entrypoint returns it: ``(hifigan, train_setup, denoiser)``.

    Pretrained: NVIDIA's generator (V1, LJSpeech, fine-tuned on FastPitch's mels) in eval mode with weight norm
    folded, the ``train_setup`` stored with it (its audio settings; ``{}`` for files without one) and a
    :class:`~tacoglow.Denoiser` built on it. Otherwise a fresh generator whose config keys may be overridden by
    ``kwargs`` (``upsample_rates=[8, 8, 4]``, ...), ``{}`` and None.
    """
    from tacoglow import Denoiser, HiFiGAN, HiFiGANConfig, load_hifigan
    from tacoglow.checkpoint import inspect_checkpoint

    if pretrained:
        path = _pretrained_path("hifigan", {**kwargs, "model_math": model_math})
        hifigan = load_hifigan(path)
        train_setup = dict(inspect_checkpoint(path).extra.get("train_setup") or {})
        return hifigan, train_setup, Denoiser(hifigan, win_length=1024).eval()
    config = HiFiGANConfig()
    for key, value in kwargs.items():
        if hasattr(config, key):
            setattr(config, key, value)
    return HiFiGAN(HiFiGANConfig.from_dict(config.to_dict())), {}, None
