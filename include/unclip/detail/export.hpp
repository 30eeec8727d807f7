#pragma once
// UNCLIP_CXX_API marks the documented C++ API for export from a shared build; everything else
// is hidden (-fvisibility=hidden). Static builds need no decoration.
#if defined(UNCLIP_SHARED_LIBRARY)
#  if defined(_WIN32)
#    if defined(UNCLIP_BUILDING_LIBRARY)
#      define UNCLIP_CXX_API __declspec(dllexport)
#    else
#      define UNCLIP_CXX_API __declspec(dllimport)
#    endif
#  else
#    define UNCLIP_CXX_API __attribute__((visibility("default")))
#  endif
#else
#  define UNCLIP_CXX_API
#endif
