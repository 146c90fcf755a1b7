#include "test-ckpt-util.h"
int main(void) {
        return 0;
}
