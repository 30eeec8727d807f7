/* Nothing: unclip_c_shared takes all its code from the static library. */
