/* A host application in C99, built outside the unclip tree: a 64x64 variation of a synthetic
 * gradient in two steps with the tiny demo model.
 *   consumer_c MODEL OUT.png */
#include <unclip.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

enum { kSide = 64 };

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL OUT.png\n", argv[0]);
        return 2;
    }
    if (unclip_version() != UNCLIP_API_VERSION) {
        fprintf(stderr, "header %d, library %u\n", UNCLIP_API_VERSION, (unsigned)unclip_version());
        return 1;
    }
    static uint8_t pixels[kSide * kSide * 3];
    for (int y = 0; y < kSide; ++y)
        for (int x = 0; x < kSide; ++x) {
            uint8_t* p = pixels + (y * kSide + x) * 3;
            p[0] = (uint8_t)(4 * x);
            p[1] = (uint8_t)(4 * y);
            p[2] = 128;
        }

    unclip_open_params open;
    unclip_open_default_params(&open);
    open.model_path = argv[1];
    open.allow_reduced = true; /* the tiny model is smaller than the official architectures */
    open.threads = 2;
    unclip_pipeline* pipeline = NULL;
    if (unclip_pipeline_open(&open, &pipeline) != UNCLIP_STATUS_OK) {
        fprintf(stderr, "open: %s\n", unclip_last_error());
        return 1;
    }
    unclip_conditioning cond;
    unclip_conditioning_default(&cond);
    cond.image.pixels = pixels;
    cond.image.width = kSide;
    cond.image.height = kSide;
    cond.image.channels = 3;
    unclip_generate_params params;
    unclip_generate_default_params(&params);
    params.images = &cond;
    params.n_images = 1;
    params.width = kSide;
    params.height = kSide;
    params.steps = 2;
    params.seed = 42;

    int rc = 1;
    unclip_images* output = NULL;
    unclip_image_view image;
    if (unclip_generate(pipeline, &params, &output) != UNCLIP_STATUS_OK) {
        fprintf(stderr, "generate: %s\n", unclip_pipeline_last_error(pipeline));
    } else if (unclip_images_count(output) != 1 || unclip_images_get(output, 0, &image) != UNCLIP_STATUS_OK ||
               image.width != kSide || image.height != kSide) {
        fprintf(stderr, "unexpected output\n");
    } else if (unclip_image_save_png(&image, argv[2]) != UNCLIP_STATUS_OK) {
        fprintf(stderr, "save: %s\n", unclip_last_error());
    } else {
        printf("consumer (C): unclip %s wrote %s (%dx%d)\n", unclip_version_string(), argv[2], image.width,
               image.height);
        rc = 0;
    }
    unclip_images_free(output);
    unclip_pipeline_free(pipeline);
    return rc;
}
