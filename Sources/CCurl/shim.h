/* The system libcurl (libcurl4-openssl-dev), for the oauth2 plugin. */
#include <curl/curl.h>
