"""An image variation through the C API from Python with ctypes (no compiled binding needed).

    python3 variation.py LIBUNCLIP.so MODEL IMAGE OUT.png [--allow-reduced]

The structs below mirror capi/unclip.h field by field: the *_default* functions fill the whole
struct of the header's version, so every field must be declared here. struct_size then tells a
newer library which fields this script knows, so it keeps working with newer libraries.
"""
import ctypes as C
import sys


class ImageView(C.Structure):
    _fields_ = [("pixels", C.POINTER(C.c_uint8)), ("width", C.c_int32), ("height", C.c_int32),
                ("channels", C.c_int32), ("row_stride", C.c_size_t)]


class OpenParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("model_path", C.c_char_p), ("clip_vision_path", C.c_char_p),
                ("threads", C.c_int32), ("prediction", C.c_int), ("allow_reduced", C.c_bool),
                ("unet_path", C.c_char_p), ("vae_path", C.c_char_p), ("text_encoder_path", C.c_char_p)]


class Conditioning(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("image", ImageView), ("embedding", C.POINTER(C.c_float)),
                ("embedding_size", C.c_int32), ("strength", C.c_float), ("noise_augmentation", C.c_float)]


class Progress(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("step", C.c_int32), ("steps", C.c_int32), ("sigma", C.c_float),
                ("preview", ImageView)]


PROGRESS_FN = C.CFUNCTYPE(C.c_bool, C.POINTER(Progress), C.c_void_p)


class GenerateParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("images", C.POINTER(Conditioning)), ("n_images", C.c_int32),
                ("prompt", C.c_char_p), ("negative_prompt", C.c_char_p), ("steps", C.c_int32),
                ("cfg_scale", C.c_float), ("sampler", C.c_int), ("scheduler", C.c_int), ("seed", C.c_uint64),
                ("width", C.c_int32), ("height", C.c_int32), ("batch_count", C.c_int32), ("init_image", ImageView),
                ("denoise", C.c_float), ("mask", ImageView), ("on_progress", PROGRESS_FN),
                ("on_progress_user", C.c_void_p), ("preview", C.c_bool)]


def main(argv):
    if len(argv) < 5:
        print(__doc__)
        return 2
    lib = C.CDLL(argv[1])
    lib.unclip_last_error.restype = C.c_char_p
    lib.unclip_pipeline_last_error.restype = C.c_char_p
    lib.unclip_version_string.restype = C.c_char_p
    lib.unclip_pipeline_open.argtypes = [C.POINTER(OpenParams), C.POINTER(C.c_void_p)]
    lib.unclip_pipeline_last_error.argtypes = [C.c_void_p]
    lib.unclip_generate.argtypes = [C.c_void_p, C.POINTER(GenerateParams), C.POINTER(C.c_void_p)]
    lib.unclip_image_load.argtypes = [C.c_char_p, C.POINTER(C.c_void_p)]
    lib.unclip_images_get.argtypes = [C.c_void_p, C.c_int32, C.POINTER(ImageView)]
    lib.unclip_image_save_png.argtypes = [C.POINTER(ImageView), C.c_char_p]
    lib.unclip_images_free.argtypes = [C.c_void_p]
    lib.unclip_pipeline_free.argtypes = [C.c_void_p]
    print("unclip", lib.unclip_version_string().decode())

    open_params = OpenParams()
    lib.unclip_open_default_params(C.byref(open_params))
    open_params.model_path = argv[2].encode()
    open_params.allow_reduced = "--allow-reduced" in argv[5:]
    pipeline = C.c_void_p()
    if lib.unclip_pipeline_open(C.byref(open_params), C.byref(pipeline)) != 0:
        print("open:", lib.unclip_last_error().decode(), file=sys.stderr)
        return 1
    inputs, outputs = C.c_void_p(), C.c_void_p()
    try:
        if lib.unclip_image_load(argv[3].encode(), C.byref(inputs)) != 0:
            print("image:", lib.unclip_last_error().decode(), file=sys.stderr)
            return 1
        cond = Conditioning()
        lib.unclip_conditioning_default(C.byref(cond))
        lib.unclip_images_get(inputs, 0, C.byref(cond.image))
        cond.noise_augmentation = 0.1

        def on_progress(progress, _user):
            print(f"step {progress.contents.step}/{progress.contents.steps}")
            return True

        callback = PROGRESS_FN(on_progress)  # kept alive for the duration of the call
        params = GenerateParams()
        lib.unclip_generate_default_params(C.byref(params))
        params.images = C.pointer(cond)
        params.n_images = 1
        params.prompt = b"a watercolour painting"
        params.width, params.height, params.steps, params.seed = 64, 64, 4, 42
        params.on_progress = callback
        if lib.unclip_generate(pipeline, C.byref(params), C.byref(outputs)) != 0:
            print("generate:", lib.unclip_pipeline_last_error(pipeline).decode(), file=sys.stderr)
            return 1
        view = ImageView()
        lib.unclip_images_get(outputs, 0, C.byref(view))
        if lib.unclip_image_save_png(C.byref(view), argv[4].encode()) != 0:
            print("save:", lib.unclip_last_error().decode(), file=sys.stderr)
            return 1
        print(f"wrote {argv[4]} ({view.width}x{view.height})")
        return 0
    finally:
        lib.unclip_images_free(outputs)
        lib.unclip_images_free(inputs)
        lib.unclip_pipeline_free(pipeline)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
