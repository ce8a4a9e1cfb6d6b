fn main() {
    let a: Vec<String> = std::env::args().collect();
    let img = facegate::vision::image_io::load_image(std::path::Path::new(&a[1])).unwrap();
    let lb = facegate::vision::detector::Letterbox::fit(img.width(), img.height(), 640);
    facegate::vision::detector::resize_rgb(&img, lb.width, lb.height)
        .unwrap()
        .save(&a[2])
        .unwrap();
    img.save(&a[3]).unwrap();
}
