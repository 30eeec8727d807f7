"""unclip from Python: a small binding of the C API through ctypes (nothing to compile).

    import unclip
    with unclip.Pipeline("sd21-unclip-h.ckpt") as pipeline:
        cond = unclip.Conditioning(unclip.Image.load("cat.png"), noise_augmentation=0.1)
        images = pipeline.generate([cond], prompt="an oil painting", steps=20, seed=42)
        images[0].save_png("variation.png")

The shared library (a build with UNCLIP_SHARED=ON) is found, in this order, from unclip.load(path),
the UNCLIP_LIBRARY environment variable, or the loader's search path. Failures raise unclip.Error,
whose status is the C API's status name ("bad_model", "invalid_argument", ...) and whose message is
the library's. One Pipeline is used by one thread at a time; cancel() may be called from any.

The structs below mirror unclip.h 0.1 field by field, up to prior_path. A *_default* function
writes the whole struct of the library's own version, which may be longer than this module's: it
writes into a larger buffer, this module keeps the fields it knows and sets struct_size to their
size, so a newer library defaults the rest and this module keeps working with it.
"""
import ctypes as C
import ctypes.util
import os

__all__ = ["Error", "Image", "Conditioning", "Progress", "Pipeline", "load", "version",
           "mix_embeddings", "slerp_embeddings", "blend_embeddings"]


class _ImageView(C.Structure):
    _fields_ = [("pixels", C.POINTER(C.c_uint8)), ("width", C.c_int32), ("height", C.c_int32),
                ("channels", C.c_int32), ("row_stride", C.c_size_t)]


class _OpenParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("model_path", C.c_char_p), ("clip_vision_path", C.c_char_p),
                ("threads", C.c_int32), ("prediction", C.c_int), ("allow_reduced", C.c_bool),
                ("unet_path", C.c_char_p), ("vae_path", C.c_char_p), ("text_encoder_path", C.c_char_p),
                ("prior_path", C.c_char_p)]


class _PriorParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("steps", C.c_int32), ("guidance_scale", C.c_float),
                ("seed", C.c_uint64)]


class _Conditioning(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("image", _ImageView), ("embedding", C.POINTER(C.c_float)),
                ("embedding_size", C.c_int32), ("strength", C.c_float), ("noise_augmentation", C.c_float)]


class _Progress(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("step", C.c_int32), ("steps", C.c_int32), ("sigma", C.c_float),
                ("preview", _ImageView)]


_PROGRESS_FN = C.CFUNCTYPE(C.c_bool, C.POINTER(_Progress), C.c_void_p)


class _GenerateParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("images", C.POINTER(_Conditioning)), ("n_images", C.c_int32),
                ("prompt", C.c_char_p), ("negative_prompt", C.c_char_p), ("steps", C.c_int32),
                ("cfg_scale", C.c_float), ("sampler", C.c_int), ("scheduler", C.c_int), ("seed", C.c_uint64),
                ("width", C.c_int32), ("height", C.c_int32), ("batch_count", C.c_int32), ("init_image", _ImageView),
                ("denoise", C.c_float), ("mask", _ImageView), ("on_progress", _PROGRESS_FN),
                ("on_progress_user", C.c_void_p), ("preview", C.c_bool)]


_STATUS_NAMES = ["ok", "invalid_argument", "io", "bad_model", "bad_image", "out_of_memory", "device", "cancelled",
                 "internal"]
_PREDICTIONS = {"auto": 0, "eps": 1, "v": 2}

# Signatures of the entry points used here: name -> (restype, argtypes).
_P = C.c_void_p
_SIGNATURES = {
    "unclip_version": (C.c_uint32, []),
    "unclip_version_string": (C.c_char_p, []),
    "unclip_last_error": (C.c_char_p, []),
    "unclip_sampler_from_name": (C.c_int, [C.c_char_p, C.POINTER(C.c_int)]),
    "unclip_scheduler_from_name": (C.c_int, [C.c_char_p, C.POINTER(C.c_int)]),
    "unclip_open_default_params": (C.c_int, [C.POINTER(_OpenParams)]),
    "unclip_conditioning_default": (C.c_int, [C.POINTER(_Conditioning)]),
    "unclip_generate_default_params": (C.c_int, [C.POINTER(_GenerateParams)]),
    "unclip_pipeline_open": (C.c_int, [C.POINTER(_OpenParams), C.POINTER(_P)]),
    "unclip_pipeline_free": (None, [_P]),
    "unclip_pipeline_last_error": (C.c_char_p, [_P]),
    "unclip_pipeline_embedding_size": (C.c_int32, [_P]),
    "unclip_pipeline_encode_image": (C.c_int, [_P, C.POINTER(_ImageView), C.POINTER(C.c_float), C.c_int32]),
    "unclip_generate": (C.c_int, [_P, C.POINTER(_GenerateParams), C.POINTER(_P)]),
    "unclip_pipeline_cancel": (None, [_P]),
    "unclip_prior_default_params": (C.c_int, [C.POINTER(_PriorParams)]),
    "unclip_pipeline_prior_embedding": (C.c_int, [_P, C.c_char_p, C.POINTER(_PriorParams), C.POINTER(C.c_float),
                                                  C.c_int32]),
    "unclip_pipeline_text_diff_edit": (C.c_int, [_P, C.POINTER(C.c_float), C.c_int32, C.c_char_p, C.c_char_p,
                                                 C.c_float, C.c_float, C.POINTER(C.c_float)]),
    "unclip_embedding_blend": (C.c_int, [C.POINTER(C.POINTER(C.c_float)), C.POINTER(C.c_float), C.c_int32,
                                         C.c_int32, C.POINTER(C.c_float)]),
    "unclip_embedding_mix": (C.c_int, [C.POINTER(C.POINTER(C.c_float)), C.POINTER(C.c_float), C.c_int32, C.c_int32,
                                       C.POINTER(C.c_float)]),
    "unclip_embedding_slerp": (C.c_int, [C.POINTER(C.c_float), C.POINTER(C.c_float), C.c_int32, C.c_float,
                                         C.POINTER(C.c_float)]),
    "unclip_image_load": (C.c_int, [C.c_char_p, C.POINTER(_P)]),
    "unclip_images_count": (C.c_int32, [_P]),
    "unclip_images_get": (C.c_int, [_P, C.c_int32, C.POINTER(_ImageView)]),
    "unclip_image_save_png": (C.c_int, [C.POINTER(_ImageView), C.c_char_p]),
    "unclip_images_free": (None, [_P]),
}

_lib = None


def load(path=None):
    """Loads the shared library once: `path`, else $UNCLIP_LIBRARY, else the loader's search path.
    Later calls return the library already loaded (a different path then raises)."""
    global _lib
    where = lambda p: os.path.abspath(p) if os.path.sep in p else p  # noqa: E731
    if _lib is not None:
        if path is not None and where(path) != _lib._unclip_path:
            raise RuntimeError(f"unclip: a library is already loaded from {_lib._unclip_path}")
        return _lib
    path = path or os.environ.get("UNCLIP_LIBRARY") or ctypes.util.find_library("unclip")
    if not path:
        raise OSError("unclip: shared library not found; pass unclip.load(path) or set UNCLIP_LIBRARY")
    lib = C.CDLL(path)
    for name, (restype, argtypes) in _SIGNATURES.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    lib._unclip_path = where(path)
    _lib = lib
    return lib


def version():
    """The linked library's version, "0.1.0"."""
    return load().unclip_version_string().decode()


class Error(Exception):
    """A failed call: `status` is the C API's status name, `message` the library's explanation."""

    def __init__(self, status, message):
        self.status = _STATUS_NAMES[status] if 0 <= status < len(_STATUS_NAMES) else f"status {status}"
        self.message = message
        super().__init__(f"{self.status}: {message}")


def _check(status, message_source=None):
    if status != 0:
        message = message_source() if message_source else load().unclip_last_error()
        raise Error(status, (message or b"").decode("utf-8", "replace"))


def _defaults(struct, fill):
    # Room for the fields of any newer library version (see the module's docstring).
    buffer = (C.c_uint8 * max(4096, C.sizeof(struct)))()
    _check(fill(C.cast(buffer, C.POINTER(struct))))
    params = struct.from_buffer_copy(buffer)
    params.struct_size = C.sizeof(struct)
    return params


def _floats(values):
    return (C.c_float * len(values))(*values)


class Image:
    """8-bit interleaved pixels owned by Python: width x height x channels bytes, rows packed;
    channels 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)."""

    def __init__(self, width, height, channels, pixels):
        if len(pixels) != width * height * channels:
            raise ValueError(f"unclip.Image: {len(pixels)} bytes for {width}x{height}x{channels}")
        self.width, self.height, self.channels, self.pixels = width, height, channels, bytes(pixels)

    @classmethod
    def load(cls, path):
        """Decodes a PNG, JPEG, BMP or GIF file."""
        lib, images = load(), C.c_void_p()
        _check(lib.unclip_image_load(os.fsencode(path), C.byref(images)))
        try:
            return cls._from_list(images, 0)
        finally:
            lib.unclip_images_free(images)

    @classmethod
    def _from_list(cls, images, index):
        view = _ImageView()
        _check(load().unclip_images_get(images, index, C.byref(view)))
        row = view.width * view.channels
        stride = view.row_stride or row
        data = C.string_at(view.pixels, stride * (view.height - 1) + row)
        pixels = b"".join(data[y * stride:y * stride + row] for y in range(view.height)) if stride != row else data
        return cls(view.width, view.height, view.channels, pixels)

    def _view(self):
        # The view borrows self.pixels, which lives as long as this Image does.
        buffer = C.cast(C.c_char_p(self.pixels), C.POINTER(C.c_uint8))
        return _ImageView(buffer, self.width, self.height, self.channels, 0)

    def save_png(self, path):
        _check(load().unclip_image_save_png(C.byref(self._view()), os.fsencode(path)))


class Conditioning:
    """One unCLIP input (ComfyUI's unCLIPConditioning): an Image, or an image embedding (a sequence
    of Pipeline.embedding_size floats), with strength in [-10, 10] and noise_augmentation in [0, 1]."""

    def __init__(self, image=None, embedding=None, strength=1.0, noise_augmentation=0.0):
        if (image is None) == (embedding is None):
            raise ValueError("unclip.Conditioning: give an image or an embedding")
        self.image, self.embedding = image, embedding
        self.strength, self.noise_augmentation = strength, noise_augmentation


class Progress:
    """What on_progress receives: step (1 .. steps), steps, and sigma."""

    def __init__(self, step, steps, sigma):
        self.step, self.steps, self.sigma = step, steps, sigma


class Pipeline:
    """A loaded model. Keyword arguments mirror unclip_open_params; prediction is "auto", "eps" or
    "v"; allow_reduced accepts smaller-than-official architectures (tests)."""

    def __init__(self, model_path="", *, clip_vision_path=None, unet_path=None, vae_path=None,
                 text_encoder_path=None, prior_path=None, threads=0, prediction="auto", allow_reduced=False):
        lib = load()
        params = _defaults(_OpenParams, lib.unclip_open_default_params)
        encode = lambda p: os.fsencode(p) if p else None  # noqa: E731
        params.model_path = encode(model_path)
        params.clip_vision_path = encode(clip_vision_path)
        params.unet_path, params.vae_path = encode(unet_path), encode(vae_path)
        params.text_encoder_path = encode(text_encoder_path)
        params.prior_path = encode(prior_path)
        params.threads = threads
        if prediction not in _PREDICTIONS:
            raise ValueError(f"unclip.Pipeline: prediction must be one of {sorted(_PREDICTIONS)}")
        params.prediction = _PREDICTIONS[prediction]
        params.allow_reduced = allow_reduced
        self._handle = C.c_void_p()
        _check(lib.unclip_pipeline_open(C.byref(params), C.byref(self._handle)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def close(self):
        """Frees the model; the Pipeline is unusable afterwards. Idempotent."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle and _lib is not None:
            _lib.unclip_pipeline_free(handle)

    def _live(self):
        if not self._handle:
            raise ValueError("unclip.Pipeline: used after close()")
        return self._handle

    def _last_error(self):
        return load().unclip_pipeline_last_error(self._handle)

    @property
    def embedding_size(self):
        """Width of the image embeddings: 1024 for unclip-h, 768 for unclip-l."""
        return load().unclip_pipeline_embedding_size(self._live())

    def encode_image(self, image):
        """The projected CLIP image embedding of an Image, as a list of floats."""
        n = self.embedding_size
        out = (C.c_float * n)()
        _check(load().unclip_pipeline_encode_image(self._live(), C.byref(image._view()), out, n), self._last_error)
        return list(out)

    def prior_embedding(self, prompt, *, steps=None, guidance_scale=None, seed=None):
        """Text -> image embedding through the loaded prior (unclip-l with a prior folder). None
        leaves the C API's default (25 steps, guidance 4, seed 0). Error "invalid_argument" when the
        model has no prior."""
        lib = load()
        params = _defaults(_PriorParams, lib.unclip_prior_default_params)
        for name, value in (("steps", steps), ("guidance_scale", guidance_scale), ("seed", seed)):
            if value is not None:
                setattr(params, name, value)
        n = self.embedding_size
        out = (C.c_float * n)()
        _check(lib.unclip_pipeline_prior_embedding(self._live(), prompt.encode(), C.byref(params), out, n),
               self._last_error)
        return list(out)

    def text_diff_edit(self, embedding, from_text, to_text, *, alpha, theta):
        """DALL-E 2 text-diff edit of an image embedding, from `from_text` towards `to_text`: alpha
        scales the text direction, theta in [0, 1] interpolates from the original."""
        out = (C.c_float * len(embedding))()
        _check(load().unclip_pipeline_text_diff_edit(self._live(), _floats(embedding), len(embedding),
                                                     from_text.encode(), to_text.encode(), alpha, theta, out),
               self._last_error)
        return list(out)

    def cancel(self):
        """Asks a running generate() (on another thread) to stop within one step."""
        if self._handle:
            load().unclip_pipeline_cancel(self._handle)

    def generate(self, images=(), prompt="", *, negative_prompt="", steps=None, cfg_scale=None, sampler=None,
                 scheduler=None, seed=None, width=None, height=None, batch_count=None, init_image=None,
                 denoise=None, mask=None, on_progress=None):
        """Runs the sampler and the VAE; returns a list of Images. `images` holds Conditioning
        objects (an Image alone means strength 1, no noise augmentation). None leaves the C
        API's default (steps 20, cfg_scale 8, "euler", "normal", seed 0, 768 x 768, one image).
        on_progress(Progress) returning False cancels: Error with status "cancelled" is raised."""
        lib, handle = load(), self._live()
        params = _defaults(_GenerateParams, lib.unclip_generate_default_params)
        conds = [c if isinstance(c, Conditioning) else Conditioning(c) for c in images]
        keep = []  # buffers the C structs point into, alive until the call returns
        array = (_Conditioning * max(1, len(conds)))()
        for i, cond in enumerate(conds):
            slot = _defaults(_Conditioning, lib.unclip_conditioning_default)
            if cond.image is not None:
                slot.image = cond.image._view()
                keep.append(cond.image)
            else:
                values = _floats(cond.embedding)
                keep.append(values)
                slot.embedding, slot.embedding_size = values, len(cond.embedding)
            slot.strength, slot.noise_augmentation = cond.strength, cond.noise_augmentation
            array[i] = slot
        params.images, params.n_images = (array if conds else None), len(conds)
        params.prompt, params.negative_prompt = prompt.encode(), negative_prompt.encode()
        for name, value in (("steps", steps), ("cfg_scale", cfg_scale), ("seed", seed), ("width", width),
                            ("height", height), ("batch_count", batch_count), ("denoise", denoise)):
            if value is not None:
                setattr(params, name, value)
        for name, value, convert in (("sampler", sampler, lib.unclip_sampler_from_name),
                                     ("scheduler", scheduler, lib.unclip_scheduler_from_name)):
            if value is not None:
                number = C.c_int()
                _check(convert(value.encode(), C.byref(number)))
                setattr(params, name, number.value)
        if init_image is not None:
            params.init_image = init_image._view()
        if mask is not None:
            params.mask = mask._view()
        failure = []
        if on_progress is not None:
            def trampoline(progress, _user):
                try:
                    p = progress.contents
                    return on_progress(Progress(p.step, p.steps, p.sigma)) is not False
                except BaseException as e:  # an exception must not cross the C boundary
                    failure.append(e)
                    return False
            params.on_progress = _PROGRESS_FN(trampoline)
        outputs = C.c_void_p()
        try:
            status = lib.unclip_generate(handle, C.byref(params), C.byref(outputs))
            if failure:
                raise failure[0]
            _check(status, self._last_error)
            return [Image._from_list(outputs, i) for i in range(lib.unclip_images_count(outputs))]
        finally:
            lib.unclip_images_free(outputs)


def _combine(function, embeddings, weights):
    if not embeddings or len(weights) != len(embeddings):
        raise ValueError("unclip: one weight per embedding, at least one")
    n = len(embeddings[0])
    if any(len(e) != n for e in embeddings):
        raise ValueError("unclip: embeddings of different lengths")
    arrays = [_floats(e) for e in embeddings]
    pointers = (C.POINTER(C.c_float) * len(arrays))(*arrays)
    out = (C.c_float * n)()
    _check(function(pointers, _floats(weights), len(arrays), n, out))
    return list(out)


def mix_embeddings(embeddings, weights):
    """sum_i weights[i] * embeddings[i], over equally long float sequences."""
    return _combine(load().unclip_embedding_mix, embeddings, weights)


def blend_embeddings(embeddings, weights):
    """Spherical blend with weights >= 0 (not all zero): a running slerp."""
    return _combine(load().unclip_embedding_blend, embeddings, weights)


def slerp_embeddings(a, b, t):
    """Spherical interpolation from a (t = 0) to b (t = 1), magnitudes interpolated linearly."""
    if len(a) != len(b):
        raise ValueError("unclip.slerp_embeddings: embeddings of different lengths")
    out = (C.c_float * len(a))()
    _check(load().unclip_embedding_slerp(_floats(a), _floats(b), len(a), t, out))
    return list(out)
