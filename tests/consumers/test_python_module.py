"""Tests of examples/python/unclip.py against the shared library.

    UNCLIP_LIBRARY=libunclip.so UNCLIP_TEST_MODEL=tiny-unclip-h.safetensors \
        PYTHONPATH=examples/python python3 test_python_module.py
"""
import os
import sys
import tempfile
import unittest

import unclip

MODEL = os.environ["UNCLIP_TEST_MODEL"]


def gradient(side=64):
    return unclip.Image(side, side, 3, bytes(v for y in range(side) for x in range(side)
                                             for v in (4 * x % 256, 4 * y % 256, 128)))


class PythonModule(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pipeline = unclip.Pipeline(MODEL, allow_reduced=True, threads=2)

    @classmethod
    def tearDownClass(cls):
        cls.pipeline.close()

    def test_version_is_the_library_version(self):
        self.assertRegex(unclip.version(), r"^\d+\.\d+\.\d+$")

    def test_generate_returns_images_of_the_asked_size_and_reports_every_step(self):
        steps = []
        images = self.pipeline.generate([unclip.Conditioning(gradient(), noise_augmentation=0.1)], "a cat",
                                        width=64, height=64, steps=2, seed=1, sampler="euler_ancestral",
                                        on_progress=lambda p: steps.append((p.step, p.steps)) or True)
        self.assertEqual(len(images), 1)
        self.assertEqual((images[0].width, images[0].height, images[0].channels), (64, 64, 3))
        self.assertEqual(len(images[0].pixels), 64 * 64 * 3)
        self.assertEqual(steps, [(1, 2), (2, 2)])
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "out.png")
            images[0].save_png(path)
            again = unclip.Image.load(path)
        self.assertEqual(again.pixels, images[0].pixels)

    def test_the_same_seed_gives_the_same_image(self):
        run = lambda: self.pipeline.generate([gradient()], width=64, height=64, steps=1, seed=7)[0].pixels  # noqa: E731
        self.assertEqual(run(), run())

    def test_embeddings_condition_like_images_and_combine(self):
        embedding = self.pipeline.encode_image(gradient())
        self.assertEqual(len(embedding), self.pipeline.embedding_size)
        mixed = unclip.mix_embeddings([embedding, embedding], [0.5, 0.5])
        self.assertEqual(len(mixed), len(embedding))
        halfway = unclip.slerp_embeddings(embedding, mixed, 0.5)
        images = self.pipeline.generate([unclip.Conditioning(embedding=halfway)], width=64, height=64, steps=1)
        self.assertEqual(len(images), 1)

    def test_blends_keep_the_length_and_mismatches_are_refused(self):
        a = self.pipeline.encode_image(gradient())
        b = self.pipeline.encode_image(unclip.Image(64, 64, 3, bytes(64 * 64 * 3)))
        self.assertEqual(len(unclip.blend_embeddings([a, b], [1.0, 3.0])), len(a))
        with self.assertRaises(ValueError):
            unclip.blend_embeddings([a, b[:-1]], [1.0, 1.0])
        with self.assertRaises(unclip.Error) as caught:
            unclip.blend_embeddings([a, b], [0.0, 0.0])
        self.assertEqual(caught.exception.status, "invalid_argument")

    def test_the_prior_is_refused_by_a_model_without_one(self):
        with self.assertRaises(unclip.Error) as caught:
            self.pipeline.prior_embedding("a cat", steps=2)
        self.assertEqual(caught.exception.status, "invalid_argument")
        self.assertIn("prior", caught.exception.message)

    def test_a_text_diff_edit_the_model_cannot_make_names_the_mismatch(self):
        embedding = self.pipeline.encode_image(gradient())
        # The tiny model's text tower projects to fewer features than its image embeddings.
        with self.assertRaises(unclip.Error) as caught:
            self.pipeline.text_diff_edit(embedding, "a cat", "a dog", alpha=1.0, theta=0.5)
        self.assertEqual(caught.exception.status, "invalid_argument")
        self.assertIn("text embedding", caught.exception.message)

    def test_returning_false_from_on_progress_cancels(self):
        with self.assertRaises(unclip.Error) as caught:
            self.pipeline.generate([gradient()], width=64, height=64, steps=3, on_progress=lambda p: False)
        self.assertEqual(caught.exception.status, "cancelled")

    def test_an_exception_in_on_progress_reaches_the_caller(self):
        def fail(_progress):
            raise KeyError("from the callback")
        with self.assertRaises(KeyError):
            self.pipeline.generate([gradient()], width=64, height=64, steps=2, on_progress=fail)

    def test_bad_arguments_raise_errors_naming_the_culprit(self):
        with self.assertRaises(unclip.Error) as caught:
            self.pipeline.generate([gradient()], width=64, height=64, steps=1, sampler="no_such_sampler")
        self.assertEqual(caught.exception.status, "invalid_argument")
        self.assertIn("no_such_sampler", caught.exception.message)
        with self.assertRaises(unclip.Error) as caught:
            self.pipeline.generate([gradient()], width=63, height=64, steps=1)
        self.assertEqual(caught.exception.status, "invalid_argument")
        self.assertIn("63x64", caught.exception.message)

    def test_a_missing_model_file_is_an_io_error_naming_it(self):
        with self.assertRaises(unclip.Error) as caught:
            unclip.Pipeline("/nonexistent/model.safetensors")
        self.assertIn("/nonexistent/model.safetensors", caught.exception.message)

    def test_a_closed_pipeline_refuses_calls(self):
        pipeline = unclip.Pipeline(MODEL, allow_reduced=True, threads=1)
        pipeline.close()
        pipeline.close()
        with self.assertRaises(ValueError):
            pipeline.generate([gradient()])


if __name__ == "__main__":
    unclip.load(os.environ["UNCLIP_LIBRARY"])
    sys.exit(unittest.main(verbosity=2))
