# cmake -DDOXYGEN=<doxygen> -DDOXYFILE=<Doxyfile.docs> -DHTML=<output html dir> -P check_docs.cmake
# Builds the API reference (the `docs` target's Doxyfile) and checks that it documents the C API
# and the C++ API with the headers' own comments, which cmake/doxygen_filter.sed hands to Doxygen.
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE "${HTML}")
get_filename_component(dir "${DOXYFILE}" DIRECTORY)
execute_process(COMMAND "${DOXYGEN}" "${DOXYFILE}" WORKING_DIRECTORY "${dir}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "doxygen failed:\n${out}")
endif()
foreach(page_and_text
    "index.html|Stable Diffusion 2.1 unCLIP"
    "unclip_8h.html|unclip_pipeline_open"
    "unclip_8h.html|Loads a model"
    "structunclip__generate__params.html|multiple of 8"
    "classunclip_1_1Pipeline.html|Loads and validates the model"
    "structunclip_1_1GenerateParams.html|ComfyUI")
  string(REPLACE "|" ";" pair "${page_and_text}")
  list(GET pair 0 page)
  list(GET pair 1 text)
  if(NOT EXISTS "${HTML}/${page}")
    message(FATAL_ERROR "the API reference has no ${page}")
  endif()
  file(READ "${HTML}/${page}" html)
  string(FIND "${html}" "${text}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${page} does not say '${text}'")
  endif()
endforeach()
file(GLOB pages "${HTML}/*.html")
list(LENGTH pages n)
message(STATUS "API reference: ${n} pages in ${HTML}")
