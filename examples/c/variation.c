/* An image variation through the C API, as a host application would write it (C99).
 *   unclip_c_variation MODEL IMAGE OUT.png [--allow-reduced] */
#include <unclip.h>

#include <stdio.h>
#include <string.h>

static bool report(const unclip_progress* progress, void* user) {
    (void)user;
    printf("step %d/%d\n", progress->step, progress->steps);
    return true;
}

int main(int argc, char** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL IMAGE OUT.png [--allow-reduced]\n", argv[0]);
        return 2;
    }
    unclip_open_params open;
    unclip_open_default_params(&open);
    open.model_path = argv[1];
    open.allow_reduced = argc > 4 && strcmp(argv[4], "--allow-reduced") == 0;
    unclip_pipeline* pipeline = NULL;
    if (unclip_pipeline_open(&open, &pipeline) != UNCLIP_STATUS_OK) {
        fprintf(stderr, "open: %s\n", unclip_last_error());
        return 1;
    }
    int rc = 1;
    unclip_images* input = NULL;
    unclip_images* output = NULL;
    unclip_conditioning cond;
    unclip_conditioning_default(&cond);
    cond.noise_augmentation = 0.1f;
    unclip_generate_params params;
    unclip_generate_default_params(&params);
    params.images = &cond;
    params.n_images = 1;
    params.width = 64;
    params.height = 64;
    params.steps = 4;
    params.seed = 42;
    params.on_progress = report;
    if (unclip_image_load(argv[2], &input) != UNCLIP_STATUS_OK || unclip_images_get(input, 0, &cond.image) != UNCLIP_STATUS_OK) {
        fprintf(stderr, "image: %s\n", unclip_last_error());
    } else if (unclip_generate(pipeline, &params, &output) != UNCLIP_STATUS_OK) {
        fprintf(stderr, "generate: %s\n", unclip_pipeline_last_error(pipeline));
    } else {
        unclip_image_view image;
        if (unclip_images_get(output, 0, &image) == UNCLIP_STATUS_OK && unclip_image_save_png(&image, argv[3]) == UNCLIP_STATUS_OK) {
            printf("wrote %s (%dx%d)\n", argv[3], image.width, image.height);
            rc = 0;
        } else {
            fprintf(stderr, "save: %s\n", unclip_last_error());
        }
    }
    unclip_images_free(output);
    unclip_images_free(input);
    unclip_pipeline_free(pipeline);
    return rc;
}
