# Doxygen filter (FILTER_PATTERNS) for the public headers (cmake/UnclipDocs.cmake). The headers
# are written with plain comments (STYLE.md section 7); this turns them into Doxygen comments
# while Doxygen reads them, and leaves the files alone. A header's opening comment documents
# the file.
1s#^/\*#/** @file#
2s#^//\([^/]\)#/// @file\1#
# A comment on its own line documents what follows it.
s#^\([[:space:]]*\)//\([^/]\)#\1///\2#
s#^\([[:space:]]*\)//$#\1///#
s#^\([[:space:]]*\)/\*\([^*]\)#\1/**\2#
# A comment after a member, a parameter or an enum value documents that.
s#\([;,][[:space:]]*\)//[[:space:]]\{0,1\}\([^/]\)#\1///< \2#
s#\([;,][[:space:]]*\)/\*\([^*]\)#\1/**<\2#
