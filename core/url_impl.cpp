// The one translation unit that compiles Boost.URL, which ships as a compiled library.
#include <boost/url/src.hpp>
